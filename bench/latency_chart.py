"""The latency of each run as a PNG; runs in the plot virtual environment (matplotlib).

    python latency_chart.py TIMELINES.json OUT.png

TIMELINES.json maps a run's name to its emails as ``[seconds into the run, milliseconds
to the 250]`` pairs. Left: each run's cumulative distribution on a logarithmic axis, with
Postroom's targets marked. Right: latency against the moment each email was enqueued,
which shows whether a run kept up with the rate (flat) or fell behind (rising).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt

FLOOR = 0.1  # ms: the axes are logarithmic; a 250 before the call returned is drawn here
TARGETS = ((20.0, "p50 target 20 ms"), (100.0, "p99 target 100 ms"))
BLUES = ("#1f4e79", "#4f81bd", "#8db3e2")


def color(name: str, index: int) -> str:
    """Postroom's runs in blues, the peer in red (as in the throughput chart)."""
    return BLUES[index % len(BLUES)] if name.startswith("Postroom") else "#c0504d"


def main() -> None:
    runs: dict[str, list[list[float]]] = json.loads(Path(sys.argv[1]).read_text())
    fig, (cdf, over) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    for index, (name, timeline) in enumerate(runs.items()):
        shade = color(name, index)
        shown = sorted(max(FLOOR, ms) for _, ms in timeline)
        share = [100 * (i + 1) / len(shown) for i in range(len(shown))]
        cdf.step(shown, share, where="post", label=name, color=shade)
        over.scatter(
            [t for t, _ in timeline],
            [max(FLOOR, ms) for _, ms in timeline],
            s=2,
            color=shade,
            alpha=0.5,
            label=name,
        )
    for at, label in TARGETS:
        cdf.axvline(at, color="#9e9e9e", linestyle=":", linewidth=1)
        cdf.text(at, 3, f" {label}", color="#616161", fontsize=8, rotation=90, va="bottom")
        over.axhline(at, color="#9e9e9e", linestyle=":", linewidth=1)
    for level in (50, 99):
        cdf.axhline(level, color="#d9d9d9", linewidth=0.8, zorder=0)
    cdf.set_xscale("log")
    cdf.set_xlabel("ms from the enqueue's commit to the server's 250 (log scale)")
    cdf.set_ylabel("emails delivered within (%)")
    cdf.set_ylim(0, 100.5)
    cdf.set_title("Latency distribution at a steady rate")
    cdf.legend(loc="upper left", fontsize=7)
    over.set_yscale("log")
    over.set_xlabel("seconds into the run (when the email was enqueued)")
    over.set_ylabel("ms to the server's 250 (log scale)")
    over.set_title("Latency over the run")
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
