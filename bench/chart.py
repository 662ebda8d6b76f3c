"""The benchmark's bar chart as a PNG; runs in the plot virtual environment (matplotlib).

    python chart.py FIGURES.json OUT.png

FIGURES.json is a list of {"name", "rate"} objects, drawn in order, top to bottom.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt


def main() -> None:
    figures = json.loads(Path(sys.argv[1]).read_text())
    names = [f["name"] for f in figures][::-1]
    rates = [f["rate"] for f in figures][::-1]
    colors = [
        "#1f4e79" if n.startswith("Postroom") else "#9e9e9e" if "smtp-source" in n else "#c0504d"
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2), dpi=110)
    bars = ax.barh(names, rates, color=colors)
    ax.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], padding=3, fontsize=8)
    ax.set_xlabel("messages per second (higher is better)")
    ax.set_title("Postroom, django-post-office and the smtp-source ceiling")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
