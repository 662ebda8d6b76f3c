"""The benchmark's charts as PNGs; runs in the plot virtual environment (matplotlib).

    python chart.py FIGURES.json OUT.png

FIGURES.json is either a list of {"name", "rate"} objects, drawn as bars in order, top
to bottom; or {"workers": [1, 2, 4], "series": {label: [rate per worker count]},
"ceiling": rate}, drawn as throughput against workers with the ceiling as a line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt


def bars(figures: list[dict[str, Any]], out: str) -> None:
    names = [f["name"] for f in figures][::-1]
    rates = [f["rate"] for f in figures][::-1]
    colors = [
        "#1f4e79"
        if n.startswith("Postroom")
        else "#9e9e9e"
        if "smtp-source" in n or "smtplib" in n
        else "#c0504d"
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2), dpi=110)
    drawn = ax.barh(names, rates, color=colors)
    ax.bar_label(drawn, labels=[f"{r:,.0f}" for r in rates], padding=3, fontsize=8)
    ax.set_xlabel("messages per second (higher is better)")
    ax.set_title("Postroom, django-post-office and the ceilings")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(out)


def workers(data: dict[str, Any], out: str) -> None:
    counts = data["workers"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, rates in data["series"].items():
        ax.plot(counts, rates, marker="o", label=label)
        for n, r in zip(counts, rates, strict=True):
            ax.annotate(f"{r:,.0f}", (n, r), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)  # fmt: skip
    ax.axhline(data["ceiling"], color="#9e9e9e", linestyle="--", label="smtp-source -d ceiling")
    ax.set_xticks(counts)
    ax.set_xlabel("postroom agent run --workers N")
    ax.set_ylabel("messages per second")
    ax.set_yscale("log")
    ax.set_title("Postroom throughput against workers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    if isinstance(data, dict):
        workers(data, sys.argv[2])
    else:
        bars(data, sys.argv[2])


if __name__ == "__main__":
    main()
