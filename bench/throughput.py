"""Postroom throughput: enqueue and delivery rates against a local SMTP sink.

Sends N emails rendered from a correspondence template through enqueue → sender
agent → a counting SMTP sink (``bench/sink.py``, its own process on 127.0.0.1)
and prints the rate of each path:

* batch enqueue: ``Composer.compose`` for a class name, ``OutboxStore.enqueue_many``
  per batch (one transaction per batch); these N rows are then delivered;
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
import cProfile
import faulthandler
import hashlib
import json
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, make_url, select
from sqlalchemy.pool import NullPool

import postroom
from postroom.agent.agent import AgentStats
from postroom.app import Postroom
from postroom.cases.emails import EmailRequest
from postroom.cases.models import Recipient
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus
from postroom.settings import Settings

CLASS_GROUP = "Bench-Letters"
CLASS_NAME = f"{CLASS_GROUP}-Notice"
LETTER = "Bench notice"
SIGNATURE = "Bench signature"
SENDER = "notices@example.com"
SINK_SCRIPT = Path(__file__).with_name("sink.py")
POSTROOM_CODE = re.escape(str(Path(postroom.__file__).parent))

SIGNATURE_HTML = """\
<p style="margin-top: 24px;">Kind regards,<br>
<strong>{{ account.display_name }}</strong><br>
<a href="mailto:{{ account.address }}">{{ account.address }}</a></p>
<p style="font-size: 11px; color: #777;">You receive this message because a request was
registered in your name. Please do not reply to this address; use the contact details
of your branch instead.</p>
"""

LETTER_SUBJECT = "Request {{ case.id | default('notice') }} registered: {{ account.display_name }}"

LETTER_HTML = """\
{% set data = case.data | default({}) %}
<div style="font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222;">
<p>Dear {{ data.applicant | default("customer") }},</p>
<p>Thank you for your request. We have registered it under reference
<strong>{{ data.reference | default(case.class_name) }}</strong> and a case worker of our
{{ data.branch | default("central") }} branch will look at it shortly. Below is a summary
of what we received; please check it and tell us at once if anything is wrong.</p>
<table style="border-collapse: collapse; margin: 16px 0;">
  <tr><td style="padding: 4px 12px; color: #555;">Reference</td>
      <td style="padding: 4px 12px;">{{ data.reference | default("-") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Applicant</td>
      <td style="padding: 4px 12px;">{{ data.applicant | default("-") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Amount</td>
      <td style="padding: 4px 12px;">{{ data.amount | default(0) }}
          {{ data.currency | default("EUR") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Term</td>
      <td style="padding: 4px 12px;">{{ data.term_years | default(20) }} years</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Answer expected by</td>
      <td style="padding: 4px 12px;">{{ data.due_date | default("two weeks") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Status</td>
      <td style="padding: 4px 12px;">{{ case.status | default("New") }}</td></tr>
</table>
<p>What happens next:</p>
<ol>
  <li>We check the documents you sent with your request and ask for anything missing.</li>
  <li>Your case worker calls you to go through the details and answer your questions.</li>
  <li>You receive our decision in writing, together with the conditions of the offer.</li>
</ol>
<p>You can follow your request at any time in the customer portal under
<em>My requests</em>; keep the reference above at hand when you contact us, it lets us
find your file at once. Documents can be uploaded there as well: a scan or a clear
photo is enough, and you do not need to send the originals by post.</p>
{% include "Bench signature" %}
</div>
"""


class BenchFailure(Exception):
    """The benchmark ran but its result cannot be trusted."""


class BenchTimeout(Exception):
    """The benchmark ran out of time."""


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
class Deadline:
    at: float

    def remaining(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BenchTimeout(f"timed out during {what}")
        return left

    def check(self, what: str) -> None:
        self.remaining(what)


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    count: int
    seconds: float
    unit: str = "msg"

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class Delivery:
    phase: Phase
    stats: AgentStats
    last_sent_after: float


# --- command line ----------------------------------------------------------------------


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


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
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on ``server_url``'s server, dropped afterwards."""
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"postroom_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


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


def records(sink_port: int) -> dict[str, Any]:
    """One account on the sink, a letter with an included fragment, one case type."""
    return {
        "accounts": [
            {
                "name": CLASS_GROUP,
                "provider": "custom",
                "address": SENDER,
                "display_name": "Bench Notices",
                "host": "127.0.0.1",
                "port": sink_port,
                "security": "none",
            }
        ],
        "correspondence": [
            {"name": SIGNATURE, "html": SIGNATURE_HTML},
            {"name": LETTER, "subject": LETTER_SUBJECT, "html": LETTER_HTML},
        ],
        "case_types": [
            {
                "class": CLASS_NAME,
                "class_group": CLASS_GROUP,
                "label": "Bench notice",
                "id_prefix": "B-",
                "steps": [
                    {
                        "name": "Confirm the request",
                        "on": "created",
                        "to": [{"field": "email"}],
                        "correspondence": LETTER,
                    }
                ],
            }
        ],
    }


def recipient(i: int) -> str:
    return f"client{i}@example.com"


def case_data(i: int) -> dict[str, Any]:
    return {
        "email": recipient(i),
        "applicant": f"Client {i}",
        "reference": f"REQ-{i:06d}",
        "branch": ("north", "south", "east", "west")[i % 4],
        "amount": 100_000 + 250 * i,
        "currency": "EUR",
        "term_years": 10 + i % 21,
        "due_date": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
    }


# --- the SMTP sink ---------------------------------------------------------------------


class Sink:
    """The counting SMTP sink in its own process, spoken to over its stdio."""

    def __init__(self, max_seconds: float, data_delay: float = 0.0) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(SINK_SCRIPT),
                "--max-seconds",
                f"{max_seconds:.0f}",
                "--data-delay",
                str(data_delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._read()["port"])

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise BenchFailure("the sink has no pipes")
        return stdin, stdout

    def _read(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            raise BenchFailure(f"the sink stopped (exit code {self._process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stats(self) -> dict[str, Any]:
        stdin = self._pipes()[0]
        stdin.write("stats\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipes()[0].close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._pipes()[1].close()


@contextlib.contextmanager
def running_sink(max_seconds: float, data_delay: float = 0.0) -> Iterator[Sink]:
    sink = Sink(max_seconds, data_delay)
    try:
        yield sink
    finally:
        sink.close()


# --- profiling -------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile of the calling thread and of every thread started while active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: list[cProfile.Profile] = []

    def _start(self, *_: object) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start)
        self._start()
        return self

    def __exit__(self, *_: object) -> None:
        threading.setprofile(None)
        self._profiles[0].disable()

    def stats(self) -> pstats.Stats:
        with self._lock:
            first, *rest = self._profiles
        return pstats.Stats(first, *rest)


@contextlib.contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[None]:
    """Profile the block into ``directory/name.prof`` and print its top functions."""
    if directory is None:
        yield
        return
    with ThreadProfiles() as profiles:
        yield
    directory.mkdir(parents=True, exist_ok=True)
    stats = profiles.stats()
    stats.dump_stats(directory / f"{name}.prof")
    print(f"\n--- {name}: Postroom functions, top 10 by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(POSTROOM_CODE, 10)
    print(f"--- {name}: all functions, top 10 by own time (idle threads wait in get/poll) ---")
    stats.sort_stats("tottime").print_stats(10)


# --- the measured paths ----------------------------------------------------------------


def letter_request(i: int) -> EmailRequest:
    return EmailRequest(to=[Recipient(kind="address", value=recipient(i))], correspondence=LETTER)


def warm_up(postroom: Postroom) -> None:
    """Compile the templates once (not enqueued), as a running service would have."""
    with postroom.engine.connect() as conn:
        postroom.composer.compose(conn, letter_request(0), class_name=CLASS_NAME)


def batch_enqueue(postroom: Postroom, count: int, batch: int, deadline: Deadline) -> Phase:
    """Compose and ``enqueue_many`` in one transaction per batch."""
    start = time.perf_counter()
    done = 0
    while done < count:
        deadline.check("batch enqueue")
        size = min(batch, count - done)
        with postroom.engine.begin() as conn:
            emails = [
                email
                for i in range(done, done + size)
                for email in postroom.composer.compose(
                    conn, letter_request(i), class_name=CLASS_NAME
                ).emails
            ]
            done += len(postroom.outbox_store.enqueue_many(conn, emails))
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
    # Last resort if something hangs outside the cooperative deadline checks.
    faulthandler.dump_traceback_later(options.timeout + 120, exit=True)
    try:
        run(options, console)
    except BenchTimeout as exc:
        console.print(f"[bold red]bench: {exc} (--timeout {options.timeout:.0f} s)[/]")
        return 2
    except BenchFailure as exc:
        console.print(f"[bold red]bench: FAILED: {exc}[/]")
        return 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
