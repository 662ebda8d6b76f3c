"""Claim latency at 1,000 and at 1,000,000 queued rows, and a real agent's memory at 1,000,000.

The target: with 1,000,000 queued rows the agent's claim stays as fast as with 1,000
(indexes), and an agent's memory stays under 300 MB. On SQLite, and with ``--database-url``
on a scratch PostgreSQL database (created, then dropped):

* the rows carry ``bench/workload.py``'s letter, composed once, and the columns
  ``OutboxStore.enqueue_many`` sets, with distinct ``message_id`` values; they are written
  by ``INSERT … SELECT`` over a generated series. Their account points at smtp-sink.
* A sample runs what ``SenderAgent._claim`` runs, ``OutboxStore.expire_due`` then
  ``OutboxStore.claim`` (``batch_size``, ``lease_seconds`` from ``Settings``), timed apart,
  in a transaction on the caller's connection that is rolled back: every sample sees the
  same queue. 30 samples at 1,000 rows, 30 on the same database filled to ``--rows``.
  PostgreSQL is analyzed after a fill, as autovacuum would; SQLite is not, as in Postroom.
* Both statements' plans, as the driver got them (the claim's ``SELECT`` is a subquery of
  its ``UPDATE``): ``EXPLAIN QUERY PLAN``, or ``EXPLAIN ANALYZE`` rolled back on PostgreSQL.
* ``postroom agent run`` delivers for 20 s or 50,000 messages, its VmRSS sampled every
  0.2 s and its VmHWM read before SIGTERM.

Exits 1 when a median at ``--rows`` (claim, or sweep + claim) is over 3x that at 1,000,
when the agent's peak RSS reaches 300 MB, or when it sent nothing.

    python bench/claims.py [--rows 1000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import workload
from delivery import worker_args
from harness import (
    AGENT_COMMAND,
    BenchFailure,
    Deadline,
    SmtpSink,
    agent_env,
    guarded,
    positive,
    scratch_postgres,
    smtp_sink,
)
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy import Connection, func, insert, literal, select
from tools import postfix_tools

from postroom.app import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import NewEmail, OutboxStatus, Recipient

SMALL = 1_000
SAMPLES = 30
FILL_CHUNK = 100_000
AGENT_SECONDS = 20.0
AGENT_SENDS = 50_000
MAX_RATIO = 3.0
MAX_RSS_MB = 300.0
OWNER = "bench-claims"
CLAIM_RATIO = "claim median ratio"
STEP_RATIO = "sweep + claim median ratio"
PEAK_RSS = "agent peak RSS"
console = Console()


@dataclass(frozen=True, slots=True)
class Result:
    """One measured figure of one database."""

    database: str
    name: str
    value: float
    unit: str


def fill(postroom: Postroom, email: NewEmail, first: int, end: int, deadline: Deadline) -> None:
    """Queue rows ``first`` to ``end``, one ``INSERT … SELECT`` per chunk, server side."""
    t = tables.outbox
    recipients = [Recipient(a).to_json() for a in email.recipients]
    done = first
    while done < end:
        deadline.check("filling the outbox")
        size = min(FILL_CHUNK, end - done)
        if postroom.engine.dialect.name == "postgresql":
            n: Any = func.generate_series(1, size).column_valued("n")
        else:  # SQLite has no generate_series unless built with it
            series = select(sa.literal_column("1").label("n")).cte("series", recursive=True)
            n = series.union_all(select(series.c.n + 1).where(series.c.n < size)).c.n
        number, now = sa.cast(n + done, sa.String), utcnow()
        columns: dict[str, Any] = {
            "message_id": literal("<claims-") + number + ">",
            "account": literal(email.account),
            "subject": literal(email.subject),
            "mail_from": literal(email.mail_from),
            "recipients": literal(recipients, type_=t.c.recipients.type),
            "message": literal(email.message, type_=t.c.message.type),
            "status": literal(OutboxStatus.QUEUED.value),
            "attempts": literal(0),
            "next_attempt_at": literal(now, type_=t.c.next_attempt_at.type),
            "priority": literal(email.priority.rank),
            "created_at": literal(now, type_=t.c.created_at.type),
            "updated_at": literal(now, type_=t.c.updated_at.type),
        }
        with postroom.engine.begin() as conn:
            conn.execute(insert(t).from_select(list(columns), select(*columns.values())))
        done += size
    with postroom.engine.begin() as conn:
        queued = conn.execute(
            select(func.count()).where(t.c.status == OutboxStatus.QUEUED.value)
        ).scalar_one()
        if queued != end:
            raise BenchFailure(f"the outbox holds {queued} queued rows, expected {end}")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE outbox")


def measure_claims(postroom: Postroom, deadline: Deadline) -> tuple[list[float], list[float]]:
    """``SAMPLES`` expiry sweeps and claims (ms), each pair in a transaction rolled back."""
    store, settings = postroom.outbox_store, postroom.settings
    expire: list[float] = []
    claim: list[float] = []
    with postroom.engine.connect() as conn:
        for sample in range(SAMPLES + 1):  # the first one warms caches and is not kept
            deadline.check("claims")
            with rolled_back(conn):
                start = time.perf_counter()
                store.expire_due(conn)
                swept = time.perf_counter()
                rows = store.claim(
                    conn, owner=OWNER, limit=settings.batch_size, lease=settings.lease_seconds
                )
                claimed = time.perf_counter()
            if len(rows) != settings.batch_size:
                raise BenchFailure(f"a claim got {len(rows)} rows, not {settings.batch_size}")
            if sample:
                expire.append((swept - start) * 1000)
                claim.append((claimed - swept) * 1000)
    return expire, claim


@contextlib.contextmanager
def rolled_back(conn: Connection) -> Iterator[None]:
    """A transaction that never commits: the claim's changes are undone."""
    transaction = conn.begin()
    try:
        yield
    finally:
        transaction.rollback()


def claim_plans(postroom: Postroom) -> list[str]:
    """The plans of the sweep's and the claim's statements, as the driver received them."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            captured.append((statement, parameters))

    store, settings = postroom.outbox_store, postroom.settings
    lines: list[str] = []
    with postroom.engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", capture)
        with rolled_back(conn):
            store.expire_due(conn)
            store.claim(conn, owner=OWNER, limit=settings.batch_size, lease=settings.lease_seconds)
        sa.event.remove(conn, "before_cursor_execute", capture)
        for statement, parameters in captured:
            lines.append(" ".join(statement.split()))
            with rolled_back(conn):
                if conn.dialect.name == "sqlite":
                    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                    depth = {0: 0}
                    for node, parent, _, detail in rows:
                        depth[node] = depth.get(parent, 0) + 1
                        lines.append("  " * depth[node] + str(detail))
                else:
                    explain = "EXPLAIN (ANALYZE, BUFFERS) " + statement
                    lines += ["  " + str(r[0]) for r in conn.exec_driver_sql(explain, parameters)]
    return lines


def stop(process: subprocess.Popen[bytes], wait: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``wait`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def status_mb(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` size field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise BenchFailure(f"no {field} for process {pid}")


def run_agent(
    postroom: Postroom,
    url: str,
    key: str,
    sink: SmtpSink,
    deadline: Deadline,
    *,
    rows: int,
    log: Path,
) -> tuple[float, float, float, int, int]:
    """VmHWM, highest sampled VmRSS, seconds run, rows sent and messages smtp-sink counted."""
    settings = postroom.settings
    env = agent_env(
        {
            "database_url": url,
            "secret_key": key,
            "batch_size": settings.batch_size,
            "lease_seconds": settings.lease_seconds,
        }
    )
    before = sink.count()
    with log.open("wb") as out:
        # One agent in one process (agent run's default is a worker per core): its memory.
        command = [*AGENT_COMMAND, *worker_args(1)]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    sampled = 0.0
    try:
        start = time.monotonic()
        # The sink's counter, not the database: a reader would contend for SQLite's lock.
        while time.monotonic() - start < AGENT_SECONDS and sink.count() - before < min(
            AGENT_SENDS, rows
        ):
            deadline.check("the agent run")
            if process.poll() is not None:
                tail = log.read_bytes()[-400:].decode(errors="replace")
                raise BenchFailure(f"the agent exited with {process.returncode}: {tail}")
            sampled = max(sampled, status_mb(process.pid, "VmRSS"))
            time.sleep(0.2)
        peak = status_mb(process.pid, "VmHWM")  # gone with the process once it exits
        seconds = time.monotonic() - start
    finally:
        stop(process, 60)
    if process.returncode != 0:
        raise BenchFailure(f"the agent stopped with exit code {process.returncode}")
    t = tables.outbox
    with postroom.engine.connect() as conn:
        query = select(func.count()).where(t.c.status == OutboxStatus.SENT.value)
        sent = int(conn.execute(query).scalar_one())
    return peak, sampled, seconds, sent, sink.wait_for(before + sent) - before


def bench_database(
    name: str, url: str, rows: int, sink: SmtpSink, deadline: Deadline, *, work: Path
) -> list[Result]:
    key = secrets.token_urlsafe(32)
    results: list[Result] = []

    def add(what: str, value: float, unit: str) -> None:
        results.append(Result(name, what, value, unit))

    with Postroom.open(url, secret_key=key) as postroom:
        postroom.apply(workload.records(sink.port))
        with postroom.engine.connect() as conn:  # composed once: every row carries its bytes
            request, class_name = workload.letter_request(0), workload.CLASS_NAME
            email = postroom.composer.batch(conn).compose(request, class_name=class_name).emails[0]
        settings = postroom.settings
        console.print(
            f"{name}: batch_size {settings.batch_size}, lease {settings.lease_seconds:.0f} s, "
            f"{len(email.message):,} bytes a row"
        )
        fill(postroom, email, 0, SMALL, deadline)
        small = measure_claims(postroom, deadline)
        start = time.perf_counter()
        fill(postroom, email, SMALL, rows, deadline)
        filled = time.perf_counter() - start
        console.print(f"{name}: filled {rows - SMALL:,} rows in {filled:.1f} s")
        large = measure_claims(postroom, deadline)
        console.print(f"{name}: plans of the expiry sweep and the claim at {rows:,} rows:")
        for line in claim_plans(postroom):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        medians = {}
        for size, (sweeps, claims) in ((SMALL, small), (rows, large)):
            add(f"claim median @ {size:,}", statistics.median(claims), "ms")
            add(f"claim p95 @ {size:,}", statistics.quantiles(claims, n=20)[-1], "ms")
            add(f"expiry sweep median @ {size:,}", statistics.median(sweeps), "ms")
            steps = [s + c for s, c in zip(sweeps, claims, strict=True)]
            medians[size] = (statistics.median(claims), statistics.median(steps))
        add(CLAIM_RATIO, medians[rows][0] / medians[SMALL][0], "x")
        add(STEP_RATIO, medians[rows][1] / medians[SMALL][1], "x")
        add(f"fill {rows - SMALL:,} rows", filled, "s")
        console.print(f"{name}: an agent delivers from {rows:,} queued rows…")
        log = work / f"agent-{name}.log"
        ran = run_agent(postroom, url, key, sink, deadline, rows=rows, log=log)
        peak, sampled, seconds, sent, received = ran
        # The kernel updates VmHWM lazily: a sample can be above it.
        add(PEAK_RSS, max(peak, sampled), "MB")
        add("agent VmHWM before SIGTERM", peak, "MB")
        add("agent highest sampled VmRSS", sampled, "MB")
        add("agent ran", seconds, "s")
        add("rows sent (outbox)", sent, "rows")
        add("messages at smtp-sink", received, "msg")
        if sent != received:
            raise BenchFailure(f"{name}: the outbox says {sent:,} sent, the sink {received:,}")
    return results


def run(*, database_url: str | None, rows: int, timeout: float) -> list[Result]:
    """Measure SQLite, and PostgreSQL when ``database_url`` names a server."""
    if rows <= SMALL:
        raise ValueError(f"rows must be over {SMALL:,}")
    deadline = Deadline(time.monotonic() + timeout)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="postroom-claims-") as scratch:
        work = Path(scratch)
        with smtp_sink(postfix_tools(), work) as sink:
            url = f"sqlite:///{work / 'claims.db'}"
            results += bench_database("SQLite", url, rows, sink, deadline, work=work)
            if database_url:
                with scratch_postgres(database_url) as url:
                    results += bench_database("PostgreSQL", url, rows, sink, deadline, work=work)
    return results


def problems(results: list[Result]) -> list[str]:
    """Where the target is missed."""
    found = []
    for r in results:
        if r.name in (CLAIM_RATIO, STEP_RATIO) and r.value > MAX_RATIO:
            found.append(f"{r.database}: {r.name} {r.value:.1f}x (max {MAX_RATIO:.0f}x)")
        if r.name == PEAK_RSS and r.value >= MAX_RSS_MB:
            found.append(f"{r.database}: {r.name} {r.value:.0f} MB (max {MAX_RSS_MB:.0f} MB)")
        if r.name == "rows sent (outbox)" and r.value == 0:
            found.append(f"{r.database}: the agent sent nothing, so its memory means little")
    return found


def table(results: list[Result], rows: int) -> Table:
    title = f"Postroom claims, {SMALL:,} vs {rows:,} queued rows"
    columns = ("database", "measurement", Column("value", justify="right"), "unit")
    out = Table(*columns, title=title, title_justify="left")
    for r in results:
        value = f"{r.value:,.0f}" if r.unit in ("rows", "msg") else f"{r.value:,.2f}"
        out.add_row(r.database, r.name, value, r.unit)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=positive, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL server (scratch database on it)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql:// URL (SQLite always runs)")
    if args.rows <= SMALL:
        parser.error(f"--rows must be over {SMALL:,}")
    start = time.perf_counter()
    results = guarded(
        "claims",
        lambda: run(database_url=args.database_url, rows=args.rows, timeout=args.timeout),
        timeout_note=f"--timeout {args.timeout:.0f} s",
        watchdog=args.timeout + 120,
    )
    console.print(table(results, args.rows))
    console.print(f"total run time {time.perf_counter() - start:.0f} s")
    missed = problems(results)
    for line in missed:
        console.print(f"[bold red]claims: target missed: {line}[/]")
    if not missed:
        console.print("claims: target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
