"""Postroom's rows of ``make bench``: enqueue, delivery by ``agent run --workers N``, end
to end, and the agent process running alongside the application.

N emails are enqueued once per round (``Postroom.send_many``, ``ENQUEUE_BATCH`` per
call) and made due only tomorrow; the database is copied (SQLite's backup API) for each
worker count, so every ``postroom agent run --workers N`` starts from the same queue.
Once all N workers have registered, the rows are made due in one transaction: delivery
is timed from that commit to the last row recorded as sent (a running service's agent
has long started; process start-up is not the outbox's cost). End to end is the batch
enqueue plus that delivery.
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import harness
import throughput
import workload
from ceiling import expect
from harness import Phase
from sqlalchemy import func, select, update

from postroom import Postroom, Settings
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus

WORKER_COUNTS = (1, 2, 4)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Rows per send_many call: above the default compose_parallel_from (1,000), so a batch is
# composed in the composition processes where Postroom has them.
ENQUEUE_BATCH = 2000
SINGLE_SAMPLE = 2000
WAITING_POLL = 0.02  # seconds: how soon a waiting agent sees rows made due


@functools.cache
def workers_supported() -> bool:
    """Whether this Postroom's ``agent run`` takes ``--workers`` (asked once)."""
    result = subprocess.run(
        [*harness.AGENT_COMMAND, "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--workers" in result.stdout


DELIVERY = "Postroom delivery, agent run --workers"
END_TO_END = "Postroom end to end, agent run --workers"


def delivery_name(workers: int) -> str:
    return f"{DELIVERY} {workers}"


def end_to_end_name(workers: int) -> str:
    return f"{END_TO_END} {workers}"


def alongside_name(workers: int) -> str:
    return f"Postroom end to end, agent process alongside (--workers {workers})"


def options(count: int) -> throughput.Options:
    return throughput.parse_args(["--count", str(count), "--enqueue-batch", str(ENQUEUE_BATCH)])


def agent_settings(url: str, key: str, opts: throughput.Options) -> dict[str, object]:
    return {
        "database_url": url,
        "secret_key": key,
        "batch_size": opts.agent_batch,
        "connections_per_account": opts.connections,
        "log_level": "WARNING",
    }


def postroom_run(
    sink: harness.SmtpSink,
    count: int,
    work: Path,
    *,
    workers: tuple[int, ...],
    timeout: float,
) -> list[Phase]:
    """Enqueue N once; deliver a copy with each worker count; then the single sample."""
    opts = options(count)
    deadline = harness.Deadline(time.monotonic() + timeout)
    stem = work / f"postroom-{time.monotonic_ns()}"
    key = secrets.token_urlsafe(32)
    url = f"sqlite:///{stem}.db"
    settings = Settings(
        database_url=url,
        secret_key=key,
        batch_size=opts.agent_batch,
        connections_per_account=opts.connections,
    )
    phases: list[Phase] = []
    with Postroom(settings) as postroom:
        postroom.apply(workload.records(sink.port))
        workload.warm_up(postroom)
        enqueue = throughput.batch_enqueue(postroom, count, opts.enqueue_batch, deadline)
        postpone(postroom)
        copies = {n: Path(f"{stem}-w{n}.db") for n in workers}
        for copy in copies.values():
            backup(Path(f"{stem}.db"), copy)
        # One email per call, as an application sends them; these stay queued.
        sample = min(count, SINGLE_SAMPLE)
        single = throughput.single_enqueue(postroom, sample, count, deadline)
    phases += [
        Phase("Postroom single enqueue", sample, single.seconds),
        Phase("Postroom batch enqueue", count, enqueue.seconds),
    ]
    delivered = []
    for n, copy in copies.items():
        seconds = deliver_with_workers(
            sink, f"sqlite:///{copy}", key, opts, workers=n, work=work, deadline=deadline
        )
        delivered.append(Phase(delivery_name(n), count, seconds))
        copy.unlink()
    phases += delivered
    phases += [
        Phase(end_to_end_name(n), count, enqueue.seconds + d.seconds)
        for n, d in zip(copies, delivered, strict=True)
    ]
    return phases


def backup(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` (WAL included)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def deliver_with_workers(
    sink: harness.SmtpSink,
    url: str,
    key: str,
    opts: throughput.Options,
    *,
    workers: int,
    work: Path,
    deadline: harness.Deadline,
) -> float:
    """``agent run --workers N`` on ``url``, whose queued rows are not yet due: once every
    worker has registered they are made due in one transaction; seconds from that commit
    to the last row recorded as sent. Every row must have reached the sink."""
    before = sink.count()
    settings = {**agent_settings(url, key, opts), "poll_interval": WAITING_POLL}
    with (
        Postroom(Settings(database_url=url, secret_key=key)) as postroom,
        agent_process(settings, work / f"agent-w{workers}.log", workers=workers) as agent,
    ):
        while len(postroom.agents()) < workers:
            deadline.check(f"agent run --workers {workers} to start")
            if agent.poll() is not None:
                raise harness.BenchFailure(f"agent run --workers {workers} exited early")
            time.sleep(0.05)
        released = release(postroom)
        wait_sent(
            postroom,
            sink,
            at_sink=before + opts.count,
            sent=opts.count,
            agent=agent,
            deadline=deadline,
        )
        throughput.verify_outbox(postroom, {OutboxStatus.SENT: opts.count})
        with postroom.engine.connect() as conn:
            last = conn.execute(select(func.max(tables.outbox.c.sent_at))).scalar_one()
    if agent.returncode != 0:
        raise harness.BenchFailure(f"agent run --workers {workers} exited with {agent.returncode}")
    expect(sink, before, opts.count, f"agent run --workers {workers}")
    return float((last - released).total_seconds())


def wait_sent(
    postroom: Postroom,
    sink: harness.SmtpSink,
    *,
    at_sink: int,
    sent: int,
    agent: subprocess.Popen[bytes],
    deadline: harness.Deadline,
) -> None:
    """Until the sink's counter reaches ``at_sink`` and ``sent`` rows are recorded as sent.

    The sink's counter is watched first: counting the outbox every few milliseconds
    would take CPU from the agents on a small machine; only the last results' commit is
    then waited for in the database."""

    def alive(what: str) -> None:
        deadline.check(what)
        if agent.poll() is not None:
            raise harness.BenchFailure(f"the agent process exited with {agent.returncode}")

    while sink.count() < at_sink:
        alive("the messages at the sink")
        time.sleep(0.05)
    while postroom.outbox_counts().get(OutboxStatus.SENT, 0) < sent:
        alive("the last results")
        time.sleep(0.02)


def postpone(postroom: Postroom) -> None:
    """Make every queued row due tomorrow: the agents can start without touching them."""
    with postroom.engine.begin() as conn:
        conn.execute(
            update(tables.outbox)
            .where(tables.outbox.c.status == OutboxStatus.QUEUED.value)
            .values(next_attempt_at=utcnow() + timedelta(days=1))
        )


def release(postroom: Postroom) -> datetime:
    """Make every queued row due now; returns the time of the commit."""
    with postroom.engine.begin() as conn:
        conn.execute(
            update(tables.outbox)
            .where(tables.outbox.c.status == OutboxStatus.QUEUED.value)
            .values(next_attempt_at=utcnow())
        )
    return utcnow()


def worker_args(workers: int) -> list[str]:
    """``--workers N``; nothing for one worker where ``agent run`` has no such option."""
    if workers_supported():
        return ["--workers", str(workers)]
    if workers != 1:
        raise harness.BenchFailure(f"agent run has no --workers option (asked for {workers})")
    return []


def alongside_run(
    sink: harness.SmtpSink, count: int, work: Path, *, workers: int, timeout: float
) -> Phase:
    """End to end as Postroom runs: an agent process delivers while the application enqueues.

    The clock starts once every worker has registered and stops when the last row is sent.
    """
    opts = options(count)
    deadline = harness.Deadline(time.monotonic() + timeout)
    url = f"sqlite:///{work / f'alongside-{time.monotonic_ns()}.db'}"
    key = secrets.token_urlsafe(32)
    settings = Settings(
        database_url=url,
        secret_key=key,
        batch_size=opts.agent_batch,
        connections_per_account=opts.connections,
    )
    before = sink.count()
    with Postroom(settings) as postroom:
        postroom.apply(workload.records(sink.port))
        workload.warm_up(postroom)
        # On SQLite no notification crosses processes, and at the default poll (1 s) an
        # agent that catches up with the enqueue would wait a whole second.
        env = {**agent_settings(url, key, opts), "poll_interval": WAITING_POLL}
        with agent_process(env, work / "agent.log", workers=workers) as agent:
            while len(postroom.agents()) < workers:
                deadline.check("the agent's workers to start")
                if agent.poll() is not None:
                    raise harness.BenchFailure(f"the agent process exited with {agent.returncode}")
                time.sleep(0.05)
            start = time.perf_counter()
            throughput.batch_enqueue(postroom, count, opts.enqueue_batch, deadline)
            wait_sent(
                postroom,
                sink,
                at_sink=before + count,
                sent=count,
                agent=agent,
                deadline=deadline,
            )
            seconds = time.perf_counter() - start
    expect(sink, before, count, "Postroom, agent alongside")
    return Phase(alongside_name(workers), count, seconds)


@contextmanager
def agent_process(
    settings: dict[str, object], log: Path, *, workers: int
) -> Iterator[subprocess.Popen[bytes]]:
    """``postroom agent run --workers N`` with ``settings``, stopped with SIGTERM (killed
    if it hangs); its output goes to ``log``."""
    env = harness.agent_env(settings)
    with harness.running([*harness.AGENT_COMMAND, *worker_args(workers)], env, log) as process:
        yield process
