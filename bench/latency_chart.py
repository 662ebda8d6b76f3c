"""The latency distribution of each run as a PNG; runs in the plot virtual environment.

    python latency_chart.py LATENCIES.json OUT.png

LATENCIES.json maps a run's name to its latencies in milliseconds. Each run is drawn as
a cumulative distribution on a logarithmic axis, with Postroom's targets marked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt

FLOOR = 0.1  # ms: the axis is logarithmic; a 250 written before the call returned sits here
TARGETS = ((20.0, "p50 target 20 ms"), (100.0, "p99 target 100 ms"))


def color(name: str) -> str:
    """Postroom's runs in blues, the peer in red (as in the throughput chart)."""
    if not name.startswith("Postroom"):
        return "#c0504d"
    return "#1f4e79" if "PostgreSQL" in name else "#4f81bd"


def main() -> None:
    runs: dict[str, list[float]] = json.loads(Path(sys.argv[1]).read_text())
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    for name, values in runs.items():
        shown = sorted(max(FLOOR, v) for v in values)
        share = [100 * (i + 1) / len(shown) for i in range(len(shown))]
        ax.step(shown, share, where="post", label=name, color=color(name))
    for at, label in TARGETS:
        ax.axvline(at, color="#9e9e9e", linestyle=":", linewidth=1)
        ax.text(at, 3, f" {label}", color="#616161", fontsize=8, rotation=90, va="bottom")
    for level in (50, 99):
        ax.axhline(level, color="#d9d9d9", linewidth=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds from the enqueue's commit to the server's 250 (log scale)")
    ax.set_ylabel("emails delivered within (%)")
    ax.set_ylim(0, 100.5)
    ax.set_title("Latency distribution at a steady rate")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
