"""The dashboard's per-minute chart as plain SVG geometry, computed on the server."""

from __future__ import annotations

from dataclasses import dataclass

from postroom.outbox.activity import MinuteActivity

WIDTH = 960
HEIGHT = 220
_LEFT = 40  # room for the y-axis labels
_BOTTOM = 24  # room for the time labels
_TOP = 10
TABLE_ROWS = 60  # the busiest minutes listed under the chart for screen readers


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle: a minute's sent (stacked under) or failed emails."""

    x: float
    y: float
    width: float
    height: float
    kind: str  # "sent" or "failed"
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the SVG template draws."""

    bars: list[Bar]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, str]]
    peak: int
    total_sent: int
    total_failed: int
    # Minutes with any activity, newest first: the chart's data as a table.
    rows: list[tuple[str, int, int]]
    time_zone: str = "UTC"
    width: int = WIDTH
    height: int = HEIGHT
    left: int = _LEFT
    baseline: int = HEIGHT - _BOTTOM


def chart(minutes: list[MinuteActivity]) -> Chart:
    """Stacked bars, sent below failed, one per minute, scaled to the busiest minute."""
    plot_w = WIDTH - _LEFT - 4
    plot_h = HEIGHT - _BOTTOM - _TOP
    baseline = HEIGHT - _BOTTOM
    peak = max((m.sent + m.failed for m in minutes), default=0)
    scale = plot_h / peak if peak else 0.0
    step = plot_w / max(len(minutes), 1)
    bars: list[Bar] = []
    x_ticks: list[tuple[float, str]] = []
    every = max(len(minutes) // 6, 1)
    for i, m in enumerate(minutes):
        x = _LEFT + i * step
        label = f"{m.minute:%H:%M} UTC: {m.sent} sent, {m.failed} failed"
        sent_h = m.sent * scale
        if m.sent:
            bars.append(Bar(x, baseline - sent_h, max(step - 1, 1), sent_h, "sent", label))
        if m.failed:
            failed_h = m.failed * scale
            y = baseline - sent_h - failed_h
            bars.append(Bar(x, y, max(step - 1, 1), failed_h, "failed", label))
        if i % every == 0:
            x_ticks.append((x, f"{m.minute:%H:%M}"))
    y_ticks = [(baseline - v * scale, v) for v in sorted({0, peak // 2, peak}) if peak or not v]
    return Chart(
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        peak=peak,
        total_sent=sum(m.sent for m in minutes),
        total_failed=sum(m.failed for m in minutes),
        rows=[
            (f"{m.minute:%Y-%m-%d %H:%M}", m.sent, m.failed)
            for m in reversed(minutes)
            if m.sent or m.failed
        ][:TABLE_ROWS],
    )
