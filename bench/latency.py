"""Latency from an enqueue's commit to the server's 250, at a steady rate, beside the peer.

One email per enqueue call at ``--rate`` a second for ``--seconds`` (200/s for 30 s),
each numbered in its Subject (``probe N``). The clock starts when the call that committed
the email returns in the driver and stops when the timestamping sink
(``bench/stamp_sink.py``, its own process) writes the ``250`` after that email's data;
both read CLOCK_MONOTONIC, one clock for every process on Linux. The runs
(``bench/latency_runs.py``), each against a fresh sink:

* PostgreSQL: ``postroom agent run`` (its default workers and poll interval, 1 s) on a
  scratch database; the driver calls ``Postroom.send``. Skipped with the reason when no
  server answers;
* ``postroom serve`` on SQLite (its in-process agent) driven through
  ``POST /api/v1/emails`` with a send token. Here the clock starts as the request is
  sent: the commit is inside the request, and the agent in the same process often writes
  the 250 before the response arrives;
* django-post-office 3.12 as its documentation shows without Celery
  (``bench/peer_dpo_latency.py``): ``mail.send``, and ``send_queued_mail`` every 10 s
  (its uWSGI timer example; its cron line runs once a minute).

``--runs`` also takes ``postgres-1`` (the agent with ``--workers 1``),
``postgres-polling`` (wake-up off: the agent finds emails by polling every second) and
``serve-2`` (``serve --workers 2``: the agent in two processes beside the API's).

Every run paces its sends with the same loop (``peer_dpo_latency.paced``), from eight
threads so that one slow call (a commit waiting on the disk) does not hold back the rest.
A run fails when the sink does not see every email exactly once; the targets (p50 ≤ 20 ms,
p99 ≤ 100 ms) are Postroom's.

    python bench/latency.py [--rate 200] [--seconds 30] [--database-url postgresql://…]
                            [--peer-interval 10] [--workers N] [--runs postgres,serve,peer,…]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import scale
from harness import BenchFailure
from latency_runs import (
    LANES,
    MEASURED,
    RUNS,
    SETTLE,
    START_LIMIT,
    TARGET_P50,
    TARGET_P99,
    Options,
    Run,
    measure,
)
from peer_dpo_latency import OVERRUN
from rich.console import Console
from rich.table import Table
from tools import peer_python, plot_python

HERE = Path(__file__).parent
CHART_SCRIPT = HERE / "latency_chart.py"
DOCS_CHART = HERE.parent / "docs" / "benchmarks-latency.png"


# --- output -----------------------------------------------------------------------------


def _cells(run: Run) -> list[str]:
    if not run.stamps:
        return [f"{len(run.samples):,}", "0", *["-"] * 7, _load(run), run.verdict]
    shown = [f"{run.percentile(q):,.1f}" for q in (50, 90, 99, 100)]
    return [
        f"{len(run.samples):,}", f"{len(run.stamps):,}", f"{run.rate:,.0f}", *shown,
        f"{run.call_p50:.1f}", _cpu(run), _load(run), run.verdict,
    ]  # fmt: skip


def _cpu(run: Run) -> str:
    """CPU milliseconds per email: the caller's, and the delivering processes'."""
    if run.cpu is None or not run.samples:
        return "-"
    n = len(run.samples) / 1000
    return f"{run.cpu.caller / n:.1f} / {run.cpu.delivery / n:.1f}"


def _load(run: Run) -> str:
    return "-" if run.load is None else f"{run.load:.1f}"


HEADERS = [
    "run", "sent", "delivered", "rate /s", "p50 ms", "p90 ms", "p99 ms", "max ms", "call p50 ms",
    "CPU ms/email", "load",
]  # fmt: skip


def table(runs: list[Run]) -> Table:
    out = Table(*HEADERS, "p50 ≤ 20, p99 ≤ 100 ms", title="Latency", title_justify="left")
    for run in runs:
        out.add_row(run.name, *_cells(run))
    return out


def explanation(opts: Options) -> str:
    """What the table's figures are and how each system ran, in one paragraph."""
    return " ".join(
        [
            f"{opts.rate:g} emails a second for {opts.seconds:g} s, one per call from {LANES}",
            "threads, each numbered in its Subject; *rate* is what the driver managed.",
            "The clock starts when the call that committed the email returns",
            "(`Postroom.send`, django-post-office's `mail.send`), for `postroom serve` when",
            "the `POST /api/v1/emails` request is sent (the commit is inside the request,",
            "and the agent in the same process often has the 250 before the response",
            "arrives), and stops when the timestamping sink writes the 250 after the",
            "email's data (CLOCK_MONOTONIC in both processes). *call p50* is the enqueue",
            "call itself. *CPU ms/email*: CPU time per email of the caller (`Postroom.send`,",
            "the HTTP client, `mail.send`) / of what delivered (the agent and its workers,",
            "the `serve` process, the `send_queued_mail` process); PostgreSQL's own is not",
            "counted. *load*: the machine's 1-minute load average as the run ended",
            f"({os.cpu_count()} cores). The PostgreSQL run is an agent process on its",
            "defaults (one worker per core, poll interval 1 s, wake-up on); `serve` runs",
            "its agent in its own process; django-post-office runs `send_queued_mail` every",
            f"{opts.peer_interval:g} s, the shortest schedule its documentation gives",
            "without Celery (its uWSGI timer example; its cron line runs once a minute).",
            f"Targets for Postroom: p50 ≤ {TARGET_P50:.0f} ms, p99 ≤ {TARGET_P99:.0f} ms;",
            "every email must arrive exactly once.",
        ]
    )


def markdown(runs: list[Run], opts: Options) -> str:
    rows = "\n".join("| " + " | ".join([r.name, *_cells(r)]) + " |" for r in runs)
    early = [f"{r.name}: {r.early:,}" for r in runs if r.early]
    chart = "![Latency distribution per run, and latency over each run](benchmarks-latency.png)"
    return (
        "## Latency: from an enqueue's commit to the server's 250\n\n"
        f"{explanation(opts)}\n\n"
        "| " + " | ".join([*HEADERS, "target"]) + " |\n"
        "| --- |" + " ---: |" * (len(HEADERS) - 1) + " --- |\n"
        f"{rows}\n\n"
        + (f"250 before the call returned: {'; '.join(early)}.\n\n" if early else "")
        + (f"{chart}\n\n" if _drawn(runs) else "")
    )


def _drawn(runs: list[Run]) -> bool:
    return any(run.stamps for run in runs)


def write_chart(runs: list[Run], work: Path, out: Path) -> None:
    """Each run's latency distribution and latency over the run, drawn by matplotlib in its
    own environment."""
    data = work / "latency.json"
    data.write_text(json.dumps({r.name: r.timeline for r in runs if r.stamps}))
    subprocess.run(
        [str(plot_python()), str(CHART_SCRIPT), str(data), str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


# --- entry points -----------------------------------------------------------------------


def _add(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(f"--{prefix}rate", type=float, default=200.0, help="emails a second")
    parser.add_argument(
        f"--{prefix}seconds", type=float, default=30.0, help="seconds at that rate (0: skip)"
    )
    parser.add_argument(
        f"--{prefix}peer-interval",
        type=float,
        default=10.0,
        help="seconds between django-post-office's send_queued_mail passes",
    )
    parser.add_argument(
        f"--{prefix}workers", type=harness.positive, help="postroom agent run --workers N"
    )
    parser.add_argument(
        f"--{prefix}runs",
        default=",".join(RUNS),
        help=f"which runs, comma-separated, of {', '.join(MEASURED)}",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The latency flags of ``bench/compare.py`` (PostgreSQL: its --scale-database-url)."""
    _add(parser, "latency-")


def options(args: argparse.Namespace, prefix: str = "latency_") -> Options:
    runs = tuple(r.strip() for r in getattr(args, f"{prefix}runs").split(",") if r.strip())
    unknown = [r for r in runs if r not in MEASURED]
    if unknown:
        raise BenchFailure(f"unknown latency runs {unknown}: choose from {', '.join(MEASURED)}")
    return Options(
        rate=getattr(args, f"{prefix}rate"),
        seconds=getattr(args, f"{prefix}seconds"),
        database_url=getattr(args, "database_url", None)
        or getattr(args, "scale_database_url", None)
        or scale.DEFAULT_SERVER,
        peer_interval=getattr(args, f"{prefix}peer_interval"),
        workers=getattr(args, f"{prefix}workers"),
        runs=runs,
    )


def section(args: argparse.Namespace, console: Console, work: Path) -> str:
    """The latency section of docs/benchmarks.md (and its chart), or why it did not run."""
    opts = options(args)
    if opts.seconds <= 0 or opts.rate <= 0:
        return "## Latency\n\nNot run (`--latency-seconds 0`).\n\n"
    runs = measure(opts, work, console)
    console.print(table(runs))
    if _drawn(runs):
        write_chart(runs, work, DOCS_CHART)
    return markdown(runs, opts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _add(parser, "")
    parser.add_argument(
        "--database-url", default=scale.DEFAULT_SERVER, help="PostgreSQL for the agent run"
    )
    parser.add_argument(
        "--chart", type=Path, default=HERE / ".work" / "benchmarks-latency.png", help="PNG out"
    )
    args = parser.parse_args(argv)
    console = Console()

    def run() -> list[Run]:
        opts = options(args, prefix="")
        if "peer" in opts.runs:
            peer_python()  # installed before any clock starts
        with tempfile.TemporaryDirectory(prefix="postroom-latency-") as scratch:
            runs = measure(opts, Path(scratch), console)
            console.print(table(runs))
            if _drawn(runs):
                args.chart.parent.mkdir(parents=True, exist_ok=True)
                write_chart(runs, Path(scratch), args.chart)
                console.print(f"wrote {args.chart}")
        return runs

    chosen = len(args.runs.split(","))
    limit = chosen * (OVERRUN * args.seconds + SETTLE + 3 * START_LIMIT) + 2 * args.peer_interval
    runs = harness.guarded(
        "latency", run, timeout_note=f"--seconds {args.seconds:g}", watchdog=limit + 300
    )
    for r in runs:
        print(f"latency: {r.name}: {r.summary()}")
    return 1 if any(r.failed for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
