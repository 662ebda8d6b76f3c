"""Postroom throughput: enqueue and delivery rates against a local SMTP sink.

Sends N emails rendered from a correspondence template through enqueue → sender
agent → a counting SMTP sink (``bench/sink.py``, its own process on 127.0.0.1)
and prints the rate of each path:

* batch enqueue: ``Postroom.send_many`` for a class name, ``--enqueue-batch`` emails
  per call (one transaction per call; composed in processes from the setting
  ``compose_parallel_from`` up); these N rows are then delivered;
* single enqueue: ``Postroom.send`` one email at a time (a smaller sample);
* case creation: ``postroom.cases.create``, whose ``on: created`` step renders and
  queues an email in the case's transaction (a smaller sample, the reference path);
* delivery: ``postroom.agent()`` with ``until_idle=True``, from agent start until the
  last row is recorded as sent; the sink must report exactly N messages with N
  distinct Message-IDs, the same ones the outbox holds.

A fresh SQLite database in a temporary directory is used unless ``--database-url``
names a PostgreSQL server, in which case a scratch database is created and dropped.

``--profile DIR`` profiles the batch enqueue and the delivery (every thread, so the
agent's database work in ``asyncio.to_thread`` is included) into ``DIR/*.prof``.

    python bench/throughput.py [--count 20000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import (
    BenchFailure,
    BenchTimeout,
    Deadline,
    Phase,
    guarded,
    positive,
    profiled,
    running_sink,
    scratch_postgres,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from workload import CLASS_NAME, LETTER, case_data, letter_request, recipient, records, warm_up

from postroom.agent import AgentStats
from postroom.app import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus
from postroom.settings import Settings


@dataclass(frozen=True, slots=True)
class Options:
    count: int
    single: int
    cases: int
    enqueue_batch: int
    agent_batch: int
    connections: int
    database_url: str | None
    timeout: float
    profile_dir: Path | None


@dataclass(frozen=True, slots=True)
class Delivery:
    phase: Phase
    stats: AgentStats
    last_sent_after: float


# --- command line ----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=positive, default=20_000, help="emails delivered (N)")
    parser.add_argument("--single", type=positive, help="Postroom.send sample (2,000 max)")
    parser.add_argument("--cases", type=positive, help="cases.create sample (2,000 max)")
    parser.add_argument("--enqueue-batch", type=positive, default=500, help="rows per insert")
    parser.add_argument("--agent-batch", type=positive, default=500, help="agent batch_size")
    parser.add_argument("--connections", type=positive, default=8, help="per account")
    parser.add_argument(
        "--database-url", help="a PostgreSQL server (a scratch database is created and dropped)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="write cProfile stats of enqueue and delivery"
    )
    args = parser.parse_args(argv)
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql:// URL (SQLite is the default)")
    sample = min(2_000, args.count)
    return Options(
        count=args.count,
        single=args.single or sample,
        cases=args.cases or sample,
        enqueue_batch=args.enqueue_batch,
        agent_batch=args.agent_batch,
        connections=args.connections,
        database_url=args.database_url,
        timeout=args.timeout,
        profile_dir=args.profile,
    )


# --- database and records --------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(server_url: str | None) -> Iterator[str]:
    """The URL of a fresh database: SQLite in a temporary directory unless a server is given."""
    if server_url:
        with scratch_postgres(server_url) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="postroom-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def open_postroom(database_url: str, options: Options) -> Postroom:
    settings = Settings(
        database_url=database_url,
        secret_key=secrets.token_urlsafe(32),
        batch_size=options.agent_batch,
        connections_per_account=options.connections,
    )
    return Postroom(settings)


# --- the measured paths ----------------------------------------------------------------


def batch_enqueue(postroom: Postroom, count: int, batch: int, deadline: Deadline) -> Phase:
    """``Postroom.send_many``: one transaction per batch."""
    start = time.perf_counter()
    done = 0
    while done < count:
        deadline.check("batch enqueue")
        size = min(batch, count - done)
        requests = [letter_request(i) for i in range(done, done + size)]
        done += len(postroom.send_many(requests, class_name=CLASS_NAME))
    return Phase("batch enqueue", done, time.perf_counter() - start)


def timed_each(name: str, count: int, action: Callable[[int], object], deadline: Deadline) -> Phase:
    start = time.perf_counter()
    for i in range(count):
        deadline.check(name)
        action(i)
    return Phase(name, count, time.perf_counter() - start)


def single_enqueue(postroom: Postroom, count: int, offset: int, deadline: Deadline) -> Phase:
    def send(i: int) -> int:
        return postroom.send(
            to=[recipient(offset + i)], correspondence=LETTER, class_name=CLASS_NAME
        )

    return timed_each("single enqueue", count, send, deadline)


def create_cases(postroom: Postroom, count: int, offset: int, deadline: Deadline) -> Phase:
    def create(i: int) -> object:
        return postroom.cases.create(CLASS_NAME, data=case_data(offset + i))

    phase = timed_each("case creation", count, create, deadline)
    return Phase(phase.name, phase.count, phase.seconds, unit="case")


def last_sent_at(postroom: Postroom) -> datetime | None:
    with postroom.engine.connect() as conn:
        last: datetime | None = conn.execute(select(func.max(tables.outbox.c.sent_at))).scalar()
        return last


def deliver(postroom: Postroom, count: int, deadline: Deadline) -> Delivery:
    """Run one agent until nothing is due; the clock stops when it returns."""
    agent = postroom.agent(agent_id="bench")

    async def run() -> AgentStats:
        return await asyncio.wait_for(agent.run(until_idle=True), deadline.remaining("delivery"))

    started_at = utcnow()
    start = time.perf_counter()
    try:
        stats = asyncio.run(run())
    except TimeoutError:
        raise BenchTimeout("timed out during delivery") from None
    seconds = time.perf_counter() - start
    last = last_sent_at(postroom)
    after = (last - started_at).total_seconds() if last is not None else float("nan")
    return Delivery(Phase("delivery", count, seconds), stats, after)


# --- verification ----------------------------------------------------------------------


def sent_ids_digest(postroom: Postroom) -> str:
    t = tables.outbox
    with postroom.engine.connect() as conn:
        ids = conn.execute(select(t.c.message_id).where(t.c.status == OutboxStatus.SENT.value))
        return ids_digest(row.message_id.encode() for row in ids)


def ids_digest(ids: Iterable[bytes]) -> str:
    return hashlib.sha256(b"\n".join(sorted(ids))).hexdigest()


def verify_outbox(postroom: Postroom, expected: dict[OutboxStatus, int]) -> None:
    counts = {s: n for s, n in postroom.outbox_counts().items() if n}
    wanted = {s: n for s, n in expected.items() if n}
    if counts != wanted:
        raise BenchFailure(f"outbox holds {_statuses(counts)}, expected {_statuses(wanted)}")


def _statuses(counts: dict[OutboxStatus, int]) -> str:
    return ", ".join(f"{n} {s.value}" for s, n in counts.items()) or "nothing"


def verify_delivery(postroom: Postroom, delivery: Delivery, sink: dict[str, Any]) -> None:
    n = delivery.phase.count
    if delivery.stats.sent != n or delivery.stats.failed or delivery.stats.retried:
        raise BenchFailure(f"the agent reports {delivery.stats}, expected {n} sent")
    verify_outbox(postroom, {OutboxStatus.SENT: n})
    received = sink["messages"], sink["distinct_message_ids"], sink["without_message_id"]
    if received != (n, n, 0):
        raise BenchFailure(
            f"the sink received {received[0]} messages with {received[1]} distinct "
            f"Message-IDs ({received[2]} without one); expected {n} and {n}"
        )
    if sink["ids_digest"] != sent_ids_digest(postroom):
        raise BenchFailure("the sink's Message-IDs are not those of the sent outbox rows")


# --- output ----------------------------------------------------------------------------


def results_table(phases: list[Phase], delivery: Delivery, sink: dict[str, Any]) -> Table:
    table = Table(title="Postroom throughput", title_justify="left")
    table.add_column("path")
    table.add_column("count", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("rate", justify="right")
    for phase in phases:
        table.add_row(
            phase.name,
            f"{phase.count:,}",
            f"{phase.seconds:.2f}",
            f"{phase.rate:,.0f} {phase.unit}/s",
        )
    table.caption = (
        f"agent: {delivery.stats.batches} batches, last row sent at "
        f"+{delivery.last_sent_after:.2f} s; sink: {sink['connections']} connections, "
        f"{sink['octets'] / max(sink['messages'], 1):,.0f} bytes/message"
    )
    return table


def end_to_end(batch: Phase, delivery: Phase) -> Phase:
    return Phase("end to end (batch)", batch.count, batch.seconds + delivery.seconds)


def summary_line(batch: Phase, single: Phase, cases: Phase, delivery: Phase) -> str:
    total = end_to_end(batch, delivery)
    return (
        f"bench: enqueue {batch.rate:.0f} msg/s (batch), {single.rate:.0f} msg/s (single), "
        f"{cases.rate:.0f} cases/s; delivery {delivery.rate:.0f} msg/s; "
        f"end to end {total.rate:.0f} msg/s; N={batch.count}"
    )


# --- main ------------------------------------------------------------------------------


def run(options: Options, console: Console) -> None:
    deadline = Deadline(time.monotonic() + options.timeout)
    database = "PostgreSQL" if options.database_url else "SQLite"
    with (
        running_sink(options.timeout + 60) as sink,
        scratch_database(options.database_url) as url,
        contextlib.closing(open_postroom(url, options)) as postroom,
    ):
        postroom.apply(records(sink.port))
        warm_up(postroom)
        console.print(f"{database}, N={options.count:,}: enqueueing…")
        with profiled(options.profile_dir, "enqueue"):
            batch = batch_enqueue(postroom, options.count, options.enqueue_batch, deadline)
        verify_outbox(postroom, {OutboxStatus.QUEUED: options.count})
        console.print("delivering…")
        with profiled(options.profile_dir, "delivery"):
            delivery = deliver(postroom, options.count, deadline)
        sink_stats = sink.stats()
        verify_delivery(postroom, delivery, sink_stats)
        console.print("single enqueue and case creation samples…")
        single = single_enqueue(postroom, options.single, options.count, deadline)
        cases = create_cases(postroom, options.cases, options.count + options.single, deadline)
        verify_outbox(
            postroom,
            {OutboxStatus.SENT: options.count, OutboxStatus.QUEUED: options.single + options.cases},
        )
    phases = [batch, single, cases, delivery.phase, end_to_end(batch, delivery.phase)]
    console.print(results_table(phases, delivery, sink_stats))
    print(summary_line(batch, single, cases, delivery.phase))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    console = Console()
    guarded(
        "bench",
        lambda: run(options, console),
        timeout_note=f"--timeout {options.timeout:.0f} s",
        watchdog=options.timeout + 120,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
