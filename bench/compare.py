"""Postroom beside django-post-office and the C ceilings, in one run, against Postfix's smtp-sink.

For N messages each, in this order:

* the ceilings (``bench/ceiling.py``), each labelled with what it is: ``smtp-source``
  with a new connection per message, ``smtp-source -d`` over persistent sessions (the
  ceiling the ratios use), and a bare ``smtplib`` loop over one connection;
* Postroom (``bench/delivery.py``): batch enqueue (``Postroom.send_many``, 2,000 per
  call), then ``postroom agent run --workers N`` delivers a copy of that queue for
  N = 1, 2 and 4; end to end is the enqueue plus that delivery; then
  ``Postroom.send`` one by one (a sample of 2,000, not delivered);
* Postroom end to end with an agent process (a worker per core) running alongside the
  enqueue, as it runs in production: from the first enqueue to the last row sent;
* django-post-office 3.12 in its own virtual environment: ``send_many``, then
  ``send_queued_mail``;
* Postroom delivery to a slow server (Postroom's own sink taking 20 ms to accept each
  message: smtp-sink delays only in whole seconds), through many connections;
* once, inbound: replies ingested and routed per second from a Dovecot folder
  (``bench/inbound.py``, 5,000 replies; skipped with the reason when Dovecot is absent);
* once, after "sent" (``bench/feedback.py``): delivery reports read from a Dovecot folder
  and applied per second (2,000 bounces; skipped with the reason when Dovecot is absent),
  and webhook events signed and delivered per second to a receiver on loopback (5,000).

Then, once: latency from an enqueue's commit to the server's 250 (``bench/latency.py``),
the scale test (``bench/scale.py``: four agent processes on PostgreSQL, 50,000 emails,
live and with one agent killed, beside one agent with ``--workers 2``), the claims at
1,000,000 queued rows with an agent's memory (``bench/claims.py``), and an idle agent's
CPU (``bench/idle.py``), each skipped with the reason when PostgreSQL is not reachable
(the claims and the idle agent still run on SQLite).

Every phase must leave exactly N more messages in smtp-sink's counter. The figures drift
between runs on a shared machine: only ratios within one run mean something.

    python bench/compare.py [--count 20000] [--rounds 2] [--scale-count 50000]
                            [--claims-rows 1000000] [--inbound-count 5000]
                            [--bounce-count 2000] [--webhook-count 5000]
                            [--idle-seconds 60] [--latency-seconds 30]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import ceiling
import delivery
import feedback
import harness
import idle
import inbound
import scale
import sections
import throughput
import workload
from harness import Phase
from rich.console import Console
from rich.table import Table
from tools import ToolError, peer_python, plot_python, postfix_tools

PEER_SCRIPT = Path(__file__).with_name("peer_dpo.py")
DOCS = Path(__file__).parent.parent / "docs" / "benchmarks.md"
CHART = DOCS.with_suffix(".png")
WORKERS_CHART = DOCS.with_name("benchmarks-workers.png")
CHART_SCRIPT = Path(__file__).with_name("chart.py")
SLOW_CONNECTIONS = 64  # connections per account: what hides a slow server's latency
# Rows per claim for the slow server: a batch ends when its slowest connection does, so
# a batch of 500 over 64 connections leaves them idle for a good part of each batch
# (measured: 500 → 1,620-1,770 msg/s, 2,000 → 1,960-2,020, 4,000 → 2,020-2,030).
SLOW_AGENT_BATCH = 2000
PEER_END_TO_END = "django-post-office end to end"


def latency_module() -> ModuleType | None:
    """``bench/latency.py`` where it exists (its rows are optional in this checkout)."""
    try:
        return importlib.import_module("latency")
    except ImportError:
        return None


def slow_server_run(count: int, work: Path, timeout: float, *, delay: float) -> Phase:
    """Postroom delivery to a server that takes ``delay`` to accept each message."""
    options = throughput.parse_args(
        ["--count", str(count), "--connections", str(SLOW_CONNECTIONS),
         "--agent-batch", str(SLOW_AGENT_BATCH)]
    )  # fmt: skip
    deadline = harness.Deadline(time.monotonic() + timeout)
    url = f"sqlite:///{work / f'slow-{time.monotonic_ns()}.db'}"
    with harness.running_sink(timeout, data_delay=delay) as sink:
        with throughput.open_postroom(url, options) as postroom:
            postroom.apply(workload.records(sink.port))
            workload.warm_up(postroom)
            throughput.batch_enqueue(postroom, count, options.enqueue_batch, deadline)
            delivered = throughput.deliver(postroom, count, deadline).phase
        stats = sink.stats()
    if stats["messages"] != count or stats["distinct_message_ids"] != count:
        raise harness.BenchFailure(f"slow server: the sink counted {stats}, not {count}")
    name = (
        f"Postroom delivery, {delay * 1000:.0f} ms server, "
        f"{SLOW_CONNECTIONS} connections, batch {SLOW_AGENT_BATCH:,}"
    )
    return Phase(name, count, delivered.seconds)


def peer_run(sink: harness.SmtpSink, count: int, work: Path, timeout: float) -> list[Phase]:
    before = sink.count()
    database = work / f"dpo-{time.monotonic_ns()}.db"
    result = subprocess.run(
        [str(peer_python()), str(PEER_SCRIPT), "--count", str(count),
         "--port", str(sink.port), "--database", str(database),
         "--batch", str(delivery.ENQUEUE_BATCH)],
        check=True, capture_output=True, timeout=timeout,
    )  # fmt: skip
    seconds = json.loads(result.stdout.decode().strip().splitlines()[-1])
    ceiling.expect(sink, before, count, "django-post-office")
    return [
        Phase("django-post-office send_many", count, seconds["enqueue_seconds"]),
        Phase("django-post-office send_queued_mail", count, seconds["delivery_seconds"]),
        Phase(PEER_END_TO_END, count, seconds["end_to_end_seconds"]),
    ]


def best(figures: list[Phase]) -> list[Phase]:
    """The fastest round of each measurement (the least disturbed by the machine)."""
    chosen: dict[str, Phase] = {}
    for f in figures:
        if f.name not in chosen or f.rate > chosen[f.name].rate:
            chosen[f.name] = f
    return list(chosen.values())


def best_run(runs: list[ceiling.Run]) -> ceiling.Run:
    return max(runs, key=lambda r: r.phase.rate)


def table(figures: list[Phase]) -> Table:
    out = Table("measurement", "messages", "seconds", "rate")
    for f in figures:
        out.add_row(f.name, f"{f.count:,}", f"{f.seconds:.2f}", f"{f.rate:,.0f} {f.unit}/s")
    return out


def fastest(figures: list[Phase], prefix: str) -> Phase:
    return max((f for f in figures if f.name.startswith(prefix)), key=lambda f: f.rate)


def final_line(figures: list[Phase]) -> str:
    """One machine-readable line: ``bench: `` then ``name value`` fields, comma-separated
    (new fields go at the end)."""
    rates = {f.name: f.rate for f in figures}
    ceiling_rate = rates[ceiling.PERSISTENT]
    ours = fastest(figures, delivery.END_TO_END)
    delivered = fastest(figures, delivery.DELIVERY)
    theirs = rates[PEER_END_TO_END]
    return (
        f"bench: postroom e2e {ours.rate:.0f} msg/s, django-post-office e2e {theirs:.0f} msg/s, "
        f"ratio {ours.rate / theirs:.2f}, ceiling {ceiling_rate:.0f} msg/s, "
        f"postroom delivery {delivered.rate:.0f} msg/s, "
        f"delivery/ceiling {delivered.rate / ceiling_rate:.2f}, "
        f"e2e/ceiling {ours.rate / ceiling_rate:.2f}, "
        f"delivery workers {delivered.name.rsplit(' ', 1)[-1]}, "
        f"e2e workers {ours.name.rsplit(' ', 1)[-1]}"
    )


def write_charts(figures: list[Phase], work: Path, workers: tuple[int, ...]) -> None:
    """docs/benchmarks.png (every row) and docs/benchmarks-workers.png (throughput vs
    workers), drawn by matplotlib in a virtual environment of its own."""
    rates = {f.name: f.rate for f in figures}
    bars = work / "figures.json"
    bars.write_text(json.dumps([{"name": f.name, "rate": f.rate} for f in figures]))
    lines = work / "workers.json"
    lines.write_text(
        json.dumps(
            {
                "workers": list(workers),
                "series": {
                    "delivery": [rates[delivery.delivery_name(n)] for n in workers],
                    "end to end": [rates[delivery.end_to_end_name(n)] for n in workers],
                },
                "ceiling": rates[ceiling.PERSISTENT],
            }
        )
    )
    for data, out in ((bars, CHART), (lines, WORKERS_CHART)):
        subprocess.run(
            [str(plot_python()), str(CHART_SCRIPT), str(data), str(out)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def write_docs(
    figures: list[Phase], line: str, *, count: int, rounds: int, bound: str, extra: str
) -> None:
    rows = "\n".join(
        f"| {f.name} | {f.count:,} | {f.seconds:.2f} | {f.rate:,.0f} {f.unit}/s |" for f in figures
    )
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(
        "# Benchmarks\n\n"
        "Written by `make bench` (`bench/compare.py`): N messages each against Postfix's "
        f"`smtp-sink` on loopback, best of {rounds} interleaved rounds, N={count:,}; every "
        "phase is checked to leave exactly N messages at the sink. Figures drift between "
        "runs on a shared machine; only ratios within one run count.\n\n"
        "Ceilings: `smtp-source` (Postfix's C load generator, 2 KB messages) with a new TCP "
        "connection per message and with `-d` (persistent sessions: the ceiling the ratios "
        "use), and a bare `smtplib` loop sending one pre-built ~4 KB message over one "
        "connection: what Python's standard library does with no outbox behind it.\n\n"
        "Settings: both applications enqueue with `send_many`, "
        f"{delivery.ENQUEUE_BATCH:,} emails per call (Postroom composes in processes from "
        "`compose_parallel_from` up); Postroom's agent (`postroom agent run --workers N`, each "
        "worker one agent) claims 500 rows at a time over 8 connections (defaults 200 and "
        "4). The queued rows are made due once every worker has registered: delivery is "
        "timed from that commit to the last row recorded as sent (process start-up left "
        "out, as for a running service), end to end is the enqueue plus that delivery. The "
        "alongside run starts one worker per core. Agents poll every "
        f"{delivery.WAITING_POLL} s (default 1 s: on SQLite no notification crosses "
        "processes). django-post-office runs on its defaults (batch 100, 5 threads); both "
        "measured with the other's settings too, the ratio stayed about the same. "
        "Postroom's messages are ~4 KB (a longer letter, its text part derived from the "
        "HTML), django-post-office's ~2.6 KB (text and HTML given). Both keep SQLite "
        "durable by their own defaults: Postroom WAL with synchronous=FULL, Django a "
        "rollback journal.\n\n"
        "| measurement | messages | seconds | rate |\n| --- | ---: | ---: | ---: |\n"
        f"{rows}\n\n`{line}`\n\n![The figures above as bars](benchmarks.png)\n\n"
        f"{bound}"
        "### Throughput against workers\n\n"
        "![Delivery and end to end against agent run --workers N, with the ceiling]"
        "(benchmarks-workers.png)\n\n"
        f"{extra}",
        encoding="utf-8",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=harness.positive, default=20_000)
    parser.add_argument("--rounds", type=harness.positive, default=2)
    parser.add_argument(
        "--scale-count", type=int, default=50_000, help="emails of the scale test (0: skip it)"
    )
    parser.add_argument(
        "--scale-database-url",
        default=scale.DEFAULT_SERVER,
        help="PostgreSQL for the scale test, the claims at 1,000,000 rows, latency and idle",
    )
    parser.add_argument(
        "--claims-rows",
        type=int,
        default=1_000_000,
        help="queued rows of the claims check (0: skip)",
    )
    parser.add_argument(
        "--inbound-count",
        type=int,
        default=5000,
        help="replies read from a Dovecot folder for the inbound row (0: skip)",
    )
    parser.add_argument(
        "--bounce-count", type=int, default=2000, help="delivery reports applied (0: skip)"
    )
    parser.add_argument(
        "--webhook-count", type=int, default=5000, help="webhook events delivered (0: skip)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="an idle agent's CPU measured (0: skip)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    parser.add_argument(
        "--slow-delay", type=float, default=0.02, help="the slow server's seconds per message"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    latency = latency_module()
    if latency is not None:
        latency.add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    began = time.monotonic()
    tools = postfix_tools()
    peer_python()  # installed before any clock starts
    plot_python()
    workers: tuple[int, ...]
    if delivery.workers_supported():
        workers = delivery.WORKER_COUNTS
    else:
        workers = (1,)
        console.print("[yellow]agent run has no --workers: one worker only[/]")
    alongside = delivery.CORES if delivery.workers_supported() else 1
    figures: list[Phase] = []
    per_connection: list[ceiling.Run] = []
    persistent: list[ceiling.Run] = []
    message = ceiling.prebuilt_message(4096)
    with tempfile.TemporaryDirectory() as scratch, harness.smtp_sink(tools, Path(scratch)) as sink:
        work = Path(scratch)
        for round_number in range(args.rounds):
            console.print(f"round {round_number + 1} of {args.rounds}")
            per_connection.append(
                ceiling.source(tools, sink, args.count, persistent=False, timeout=args.timeout)
            )
            persistent.append(
                ceiling.source(tools, sink, args.count, persistent=True, timeout=args.timeout)
            )
            figures += [per_connection[-1].phase, persistent[-1].phase]
            figures.append(ceiling.smtplib_loop(sink, args.count, message=message))
            figures += delivery.postroom_run(
                sink, args.count, work, workers=workers, timeout=args.timeout
            )
            figures.append(
                delivery.alongside_run(
                    sink, args.count, work, workers=alongside, timeout=args.timeout
                )
            )
            figures.extend(peer_run(sink, args.count, work, args.timeout))
            slow = min(args.count, 10_000)
            figures.append(slow_server_run(slow, work, args.timeout, delay=args.slow_delay))
        chosen = best(figures)
        if args.inbound_count > 0:
            # Once, beside the outbound figures: received mail read, routed and committed.
            read_in = inbound.run(args.inbound_count, work, args.timeout)
            if isinstance(read_in, Phase):
                chosen.append(read_in)
            else:
                console.print(f"[yellow]inbound not measured: {read_in}[/]")
        chosen.extend(
            feedback.measured(
                bounces=args.bounce_count,
                webhooks=args.webhook_count,
                work=work,
                timeout=args.timeout,
                say=lambda line: console.print(f"[yellow]{line}[/]"),
            )
        )
        console.print(table(chosen))
        line = final_line(chosen)
        bound = ceiling.bound_paragraph(best_run(per_connection), best_run(persistent))
        console.print(f"[dim]rows measured after {time.monotonic() - began:.0f} s[/]")
        extra = ""
        parts: list[tuple[str, Callable[[], str]]] = [
            ("scale-out", lambda: sections.scale_out(args, console)),
            ("claims", lambda: sections.claims_out(args, console)),
            ("idle agent", lambda: idle.section(args, console)),
        ]
        if latency is not None:
            latency_section: Callable[..., str] = latency.section
            parts.insert(0, ("latency", lambda: latency_section(args, console, work)))
        for name, section in parts:
            extra += section()
            console.print(f"[dim]{name} done after {time.monotonic() - began:.0f} s[/]")
        write_docs(chosen, line, count=args.count, rounds=args.rounds, bound=bound, extra=extra)
        write_charts(chosen, work, workers)
    console.print(f"wrote {DOCS}, {CHART} and {WORKERS_CHART}")
    print(line)
    return 0


def run_main() -> int:
    """``main``, with a failure said in one line instead of a traceback."""
    try:
        return main()
    except (harness.BenchFailure, harness.BenchTimeout, ToolError) as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        command = " ".join(Path(str(a)).name for a in exc.cmd[:2])
        print(f"bench: FAILED: {command} exited with {exc.returncode}: {said}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run_main())
