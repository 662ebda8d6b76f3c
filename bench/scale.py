"""Scale test: four agent processes on one PostgreSQL outbox, counted at the sink by Message-ID.

Three phases of N emails each (50,000 by default), each on a scratch database and a fresh
counting sink (``bench/sink.py``, its own process on 127.0.0.1):

* live: four ``postroom agent run`` processes deliver N; the sink must count N messages
  with N distinct Message-IDs (zero duplicates) and every outbox row must be sent;
* kill -9: the same, but once a third of N has reached the sink the agent holding the
  most rows gets SIGKILL; the other three take its rows over when its lease expires.
  Every Message-ID must still arrive, and duplicates stay within what it had in flight;
* one agent, --workers 2: one ``postroom agent run --workers 2`` delivers N, checked as
  the live phase (skipped where ``agent run`` has no --workers).

    python bench/scale.py [--count 50000] [--database-url postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import math
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import throughput
import workload
from delivery import workers_supported
from harness import (
    AGENT_COMMAND,
    BenchFailure,
    BenchTimeout,
    Deadline,
    Phase,
    Sink,
    agent_env,
    guarded,
    positive,
    running_sink,
    scratch_postgres,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, make_url, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from postroom import Postroom, Settings
from postroom.db import tables
from postroom.outbox import OutboxStatus

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
AGENTS = 4
# Rows an agent claims at once, and so the most it can hold sent but unrecorded: the
# duplicate bound of the kill -9 phase.
BATCH = 100
# Short, so the survivors take over the killed agent's rows within seconds; still ten
# heartbeats long, so a live agent on a busy two-core machine renews well before it runs out.
LEASE = 5.0
HEARTBEAT = 0.5
ENQUEUE_BATCH = 500
POLL = 0.25  # the sink answers a stats request in ~10-20 ms at 50,000 ids: cheap at this rate
SETTLE = 1.0  # after the last message: a duplicate, were there one, would arrive by now
STOP_WAIT = 30.0
WORKERS = 2  # the one agent process compared with the four: agent run --workers 2
WORKERS_PHASE = "one agent, --workers {}, live"
PROGRESS = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class ScaleResult(Phase):
    """One phase of the scale test: N delivered in ``seconds``, and what was counted."""

    note: str = ""


def require_server(server_url: str) -> None:
    """Fail with a message naming the URL unless a PostgreSQL server answers there."""
    if not server_url.startswith("postgresql"):
        raise BenchFailure(f"the scale test needs PostgreSQL, not {server_url!r}")
    try:
        url = make_url(server_url).set(drivername="postgresql+psycopg")
    except SQLAlchemyError:
        raise BenchFailure(f"{server_url!r} is not a database URL") from None
    shown = url.render_as_string(hide_password=True)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        reason = str(exc.__cause__ or exc).strip().splitlines()[0]
        raise BenchFailure(f"PostgreSQL is not reachable at {shown}: {reason}") from None
    finally:
        engine.dispose()


class Agents:
    """``processes`` agent processes (no --until-idle), each logging to its own file; with
    ``workers``, each runs that many workers (``agent run --workers N``)."""

    def __init__(
        self,
        database_url: str,
        secret_key: str,
        logs: Path,
        *,
        processes: int = AGENTS,
        workers: int | None = None,
    ) -> None:
        env = agent_env(
            {
                "database_url": database_url,
                "secret_key": secret_key,
                "batch_size": BATCH,
                "poll_interval": 0.05,
                "lease_seconds": LEASE,
                "heartbeat_interval": HEARTBEAT,
            }
        )
        self.logs = [logs / f"agent{n}.log" for n in range(processes)]
        # One worker each where agent run has --workers (its default is one per core).
        count = workers or 1
        command = AGENT_COMMAND + (["--workers", str(count)] if workers_supported() else [])
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: subprocess.Popen[bytes] | None = None
        for log in self.logs:
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                )

    def __enter__(self) -> Agents:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def tail(self, n: int) -> str:
        return self.logs[n].read_text(errors="replace")[-800:]

    def check_alive(self) -> None:
        """An agent that exits by itself has crashed: fail with its log."""
        for n, p in enumerate(self.procs):
            if p is not self.killed and p.poll() is not None:
                raise BenchFailure(f"agent {n} exited with {p.returncode}:\n{self.tail(n)}")

    def wait(self, condition: Callable[[], bool], deadline: Deadline, what: str) -> None:
        """Poll until ``condition`` holds: one poll per ``POLL``, bounded by the deadline."""
        for _ in range(math.ceil(deadline.remaining(what) / POLL) + 1):
            self.check_alive()
            if condition():
                return
            time.sleep(min(POLL, deadline.remaining(what)))
        raise BenchTimeout(f"timed out waiting for {what}")

    def kill(self, pid: int) -> None:
        [victim] = [p for p in self.procs if p.pid == pid]
        victim.kill()  # SIGKILL: no chance to record its batch or give its leases back
        victim.wait(timeout=10)
        self.killed = victim

    def stop(self) -> None:
        """SIGTERM (the batch in flight is finished and recorded), then kill after a wait."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        for p in self.procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def check_stopped_cleanly(self) -> None:
        for n, p in enumerate(self.procs):
            expected = -signal.SIGKILL if p is self.killed else 0
            if p.returncode != expected:
                raise BenchFailure(f"agent {n} exited with {p.returncode}:\n{self.tail(n)}")

    def lost_leases(self) -> int:
        """Log lines of an agent finding its lease taken: each a possible duplicate."""
        return sum(log.read_text(errors="replace").count("lease lost") for log in self.logs)


def seen(sink: Sink, what: str = "messages") -> int:
    return int(sink.stats()[what])


def sent(postroom: Postroom) -> int:
    return postroom.outbox_counts().get(OutboxStatus.SENT, 0)


def busiest_agent(postroom: Postroom, pids: list[int]) -> int:
    """The pid of the agent holding the most rows in 'sending': the kill lands mid-batch."""
    o, a = tables.outbox, tables.agents
    held = func.count(o.c.id)
    query = (
        select(a.c.pid)
        .select_from(o.join(a, o.c.lease_owner == a.c.id))
        .where(o.c.status == OutboxStatus.SENDING.value, a.c.pid.in_(pids))
        .group_by(a.c.pid)
        .order_by(held.desc())
        .limit(1)
    )
    with postroom.engine.connect() as conn:
        pid: int | None = conn.execute(query).scalar()
    return pid if pid is not None else pids[0]


def rows_held_by(postroom: Postroom, pid: int) -> int:
    """Rows still leased to the agent with this pid (read after its death: its batch)."""
    owners = [a.id for a in postroom.agents() if a.pid == pid]
    o = tables.outbox
    query = select(func.count()).where(
        o.c.status == OutboxStatus.SENDING.value, o.c.lease_owner.in_(owners)
    )
    with postroom.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def per_agent(postroom: Postroom) -> str:
    return " / ".join(f"{a.sent:,}" for a in sorted(postroom.agents(), key=lambda a: a.started_at))


def verify_delivery(postroom: Postroom, stats: dict[str, Any], count: int) -> int:
    """Every row sent and every Message-ID at the sink; returns the duplicates seen."""
    throughput.verify_outbox(postroom, {OutboxStatus.SENT: count})
    messages, distinct = int(stats["messages"]), int(stats["distinct_message_ids"])
    if stats["without_message_id"] or distinct != count:
        raise BenchFailure(
            f"the sink saw {distinct:,} distinct Message-IDs in {messages:,} messages "
            f"({stats['without_message_id']} without one); expected {count:,}"
        )
    if stats["ids_digest"] != throughput.sent_ids_digest(postroom):
        raise BenchFailure("the Message-IDs at the sink are not those of the sent outbox rows")
    return messages - distinct


def phase(
    server_url: str, count: int, timeout: float, *, kill: bool, workers: int | None = None
) -> ScaleResult:
    """Enqueue ``count`` on a scratch database, deliver with four agents (or with one agent
    running ``workers`` workers), verify at the sink."""
    name = "kill -9" if kill else "live" if workers is None else WORKERS_PHASE.format(workers)
    shape = {"processes": 1, "workers": workers} if workers else {}
    deadline = Deadline(time.monotonic() + timeout)
    key = secrets.token_urlsafe(32)  # the agents get it too: one key for every process
    with (
        running_sink(timeout + 120) as sink,
        scratch_postgres(server_url) as url,
        Postroom(Settings(database_url=url, secret_key=key, batch_size=BATCH)) as postroom,
        tempfile.TemporaryDirectory(prefix="postroom-scale-") as logs,
    ):
        postroom.apply(workload.records(sink.port))
        workload.warm_up(postroom)
        PROGRESS.print(f"{name}: enqueueing {count:,} emails…")
        throughput.batch_enqueue(postroom, count, ENQUEUE_BATCH, deadline)
        throughput.verify_outbox(postroom, {OutboxStatus.QUEUED: count})
        PROGRESS.print(f"{name}: delivering…")
        in_flight = 0
        with Agents(url, key, Path(logs), **shape) as agents:
            start = time.perf_counter()
            if kill:
                agents.wait(lambda: seen(sink) >= count // 3, deadline, "a third of N")
                victim = busiest_agent(postroom, [p.pid for p in agents.procs])
                agents.kill(victim)
                in_flight = rows_held_by(postroom, victim)
                PROGRESS.print(f"{name}: killed pid {victim} holding {in_flight} rows")
            # After a kill the count includes its duplicates: only distinct ids say all arrived.
            counted = "distinct_message_ids" if kill else "messages"
            agents.wait(lambda: seen(sink, counted) >= count, deadline, "every message")
            seconds = time.perf_counter() - start
            # Results are committed after the sends: the last rows turn 'sent' a little later.
            agents.wait(lambda: sent(postroom) == count, deadline, "the last results")
            time.sleep(SETTLE)
            agents.check_alive()
            agents.stop()
            agents.check_stopped_cleanly()
            lost = agents.lost_leases()
        stats = sink.stats()
        duplicates = verify_delivery(postroom, stats, count)
        sent_by = per_agent(postroom)
    if not kill:
        if duplicates or lost:
            raise BenchFailure(
                f"{name}: {duplicates} duplicates with every agent alive "
                f"({lost} results lost to another agent's claim); sent per agent {sent_by}"
            )
        return ScaleResult(name, count, seconds, note=f"0 duplicates; sent per agent {sent_by}")
    # A duplicate needs a message the server accepted and whose result was never
    # committed. Only the killed agent leaves such rows, and only those of its one claimed
    # batch (a claim and its results are each one transaction): they stay 'sending' under
    # its lease and are sent again after it expires. So duplicates <= its rows in flight
    # <= batch size; more would mean a live agent sent something twice.
    if duplicates > in_flight or in_flight > BATCH:
        raise BenchFailure(
            f"kill -9: {duplicates} duplicates, but the killed agent held only "
            f"{in_flight} rows (batch {BATCH}); {lost} results lost to another claim"
        )
    note = (
        f"killed agent: {duplicates} duplicates ≤ batch {BATCH} ({in_flight} in flight); "
        f"{stats['messages']:,} messages seen; sent per agent {sent_by}"
    )
    return ScaleResult(name, count, seconds, note=note)


def run(
    *, database_url: str, count: int, timeout: float, workers: int | None = WORKERS
) -> list[ScaleResult]:
    """The phases (``timeout`` seconds each); raises BenchFailure on a broken guarantee.

    ``workers``: also one agent process with that many workers, beside the four agents
    (None: without that phase, for an ``agent run`` that has no --workers)."""
    require_server(database_url)
    results = [
        phase(database_url, count, timeout, kill=False),
        phase(database_url, count, timeout, kill=True),
    ]
    if workers:
        results.append(phase(database_url, count, timeout, kill=False, workers=workers))
    return results


def results_table(results: list[ScaleResult]) -> Table:
    table = Table(
        title=f"Postroom scale test: {AGENTS} agents on PostgreSQL, and one with workers",
        title_justify="left",
    )
    table.add_column("phase")
    for column in ("messages", "seconds", "rate"):
        table.add_column(column, justify="right")
    table.add_column("counted at the sink")
    for r in results:
        table.add_row(r.name, f"{r.count:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f} msg/s", r.note)
    table.caption = (
        f"batch {BATCH}, lease {LEASE:.0f} s; seconds from starting the agents (start-up "
        "included) to the last Message-ID at the sink (for kill -9, the lease wait included)"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=positive, default=50_000, help="emails (N)")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="a PostgreSQL server")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    args = parser.parse_args(argv)
    console = Console()
    workers = WORKERS if workers_supported() else None
    results = guarded(
        "scale",
        lambda: run(
            database_url=args.database_url,
            count=args.count,
            timeout=args.timeout,
            workers=workers,
        ),
        timeout_note=f"--timeout {args.timeout:.0f} s per phase",
        watchdog=3 * args.timeout + 300,
    )
    console.print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
