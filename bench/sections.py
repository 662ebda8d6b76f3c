"""The sections of docs/benchmarks.md after the main table: scale-out and claims at scale."""

from __future__ import annotations

import argparse

import claims
import harness
import scale
from delivery import workers_supported
from rich.console import Console


def scale_out(args: argparse.Namespace, console: Console) -> str:
    """The four-agent scale test on PostgreSQL, as markdown (or why it did not run)."""
    head = f"## Scale-out: {scale.AGENTS} agent processes on PostgreSQL, and one with workers\n\n"
    if args.scale_count <= 0:
        return head + "Not run (`--scale-count 0`).\n\n"
    try:
        scale.require_server(args.scale_database_url)
    except harness.BenchFailure as exc:
        console.print(f"[yellow]scale test not run: {exc}[/]")
        return head + f"Not run: {exc}.\n\n"
    workers = scale.WORKERS if workers_supported() else None
    results = scale.run(
        database_url=args.scale_database_url,
        count=args.scale_count,
        timeout=args.timeout,
        workers=workers,
    )
    console.print(scale.results_table(results))
    rows = "\n".join(
        f"| {r.name} | {r.count:,} | {r.seconds:.2f} | {r.rate:,.0f} msg/s | {r.note} |"
        for r in results
    )
    return (
        head + f"Batch {scale.BATCH}, lease {scale.LEASE:.0f} s, counted at the sink by "
        "Message-ID; seconds from starting the agents to the last Message-ID at the sink. "
        f"Beside the {scale.AGENTS} agent processes, the same {args.scale_count:,} emails "
        + (
            f"delivered by one `postroom agent run --workers {workers}`."
            if workers
            else "were not delivered by one agent with workers: `agent run` has no --workers."
        )
        + "\n\n"
        "| phase | messages | seconds | rate | counted at the sink |\n"
        "| --- | ---: | ---: | ---: | --- |\n" + rows + "\n\n"
    )


def claims_out(args: argparse.Namespace, console: Console) -> str:
    """Claim time at 1,000 and at ``--claims-rows`` queued rows, and an agent's memory."""
    head = "## Claims with a full outbox, and an agent's memory\n\n"
    if args.claims_rows <= claims.SMALL:
        return head + "Not run (`--claims-rows` at most 1,000).\n"
    skipped = ""
    try:
        scale.require_server(args.scale_database_url)
        server: str | None = args.scale_database_url
    except harness.BenchFailure as exc:
        console.print(f"[yellow]claims on PostgreSQL not run: {exc}[/]")
        server = None
        skipped = f" PostgreSQL was not measured: {exc}."
    results = claims.run(database_url=server, rows=args.claims_rows, timeout=args.timeout)
    console.print(claims.table(results, args.claims_rows))
    missed = claims.problems(results)
    for line in missed:
        console.print(f"[bold red]claims: target missed: {line}[/]")
    rows = "\n".join(f"| {r.database} | {r.name} | {_shown(r)} | {r.unit} |" for r in results)
    verdict = "Target missed: " + "; ".join(missed) if missed else "Target met."
    return (
        head + f"{claims.SMALL:,} queued rows, then {args.claims_rows:,}; each claim is the "
        "agent's expiry sweep and claim, rolled back so that every sample sees the same "
        f"queue. {verdict}{skipped}\n\n| database | measurement | value | unit |\n"
        "| --- | --- | ---: | --- |\n" + rows + "\n"
    )


def _shown(result: claims.Result) -> str:
    """Counts as counts, measurements with two decimals."""
    return f"{result.value:,.0f}" if result.unit in ("rows", "msg") else f"{result.value:,.2f}"
