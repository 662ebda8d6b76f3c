"""The sender agent as an OS process: crash recovery via leases, SIGTERM, heartbeat."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select

from postroom import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import SmtpSink, smtp_server

pytestmark = pytest.mark.slow

SENDER = "sender@example.com"
DEADLINE = 20.0

T = TypeVar("T")


def postroom_executable() -> Path:
    exe = Path(sys.executable).parent / "postroom"
    assert exe.exists(), f"console script not installed at {exe}"
    return exe


def account(port: int) -> dict[str, Any]:
    return {
        "name": "Default",
        "address": SENDER,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
    }


def queue(pr: Postroom, count: int) -> list[int]:
    return [
        pr.send(to=[f"user{i}@example.net"], subject=f"n{i}", body="Body.", class_name="Default")
        for i in range(count)
    ]


@contextmanager
def agent_process(
    database_url: str, log: Path, *args: str, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``postroom agent run`` as a child process; killed on the way out if still alive."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    environment.update(
        POSTROOM_DATABASE_URL=database_url,
        POSTROOM_SECRET_KEY=TEST_KEY,
        POSTROOM_POLL_INTERVAL="0.05",
        POSTROOM_HEARTBEAT_INTERVAL="0.2",
        POSTROOM_BACKOFF_BASE="0",
        POSTROOM_BACKOFF_MAX="0",
        POSTROOM_SMTP_TIMEOUT="10",
        # One agent in the process: what is killed or stopped is the agent itself, not a
        # supervisor of workers (tests/test_agent_workers.py tests those).
        POSTROOM_WORKERS="1",
        **env,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(postroom_executable()), "agent", "run", *args],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def wait_for(
    what: str, probe: Callable[[], T | None], *, log: Path, timeout: float = DEADLINE
) -> T:
    """Poll ``probe`` until it returns something truthy, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}; agent output:\n{log.read_text(errors='replace')}")


def outbox_row(pr: Postroom, outbox_id: int) -> Any:
    t = tables.outbox
    with pr.engine.connect() as conn:
        return conn.execute(
            select(t.c.status, t.c.lease_owner, t.c.lease_expires_at, t.c.attempts).where(
                t.c.id == outbox_id
            )
        ).one()


def agent_rows(pr: Postroom) -> list[Any]:
    with pr.engine.connect() as conn:
        return list(conn.execute(select(tables.agents)))


def sent_count(pr: Postroom) -> int:
    return pr.outbox_counts()[OutboxStatus.SENT]


def test_killed_agent_leaves_a_lease_that_expires_then_another_agent_sends(
    postroom: Postroom, database_url: str, tmp_path: Path
) -> None:
    entered = threading.Event()
    release = threading.Event()
    sink = SmtpSink()

    def block_first_data() -> None:
        # Runs in the server's loop: the first DATA hangs until the test lets go, and
        # the server then drops that transaction (its client is gone by then).
        if not entered.is_set():
            entered.set()
            release.wait(DEADLINE)
            sink.disconnect_on_data += 1

    sink.on_data = block_first_data
    log = tmp_path / "agent.log"
    try:
        with smtp_server(sink) as srv:
            postroom.apply({"accounts": [account(srv.port)]})
            [oid] = queue(postroom, 1)

            with agent_process(database_url, log, POSTROOM_LEASE_SECONDS="2") as proc:

                def claimed_and_stuck() -> Any:
                    row = outbox_row(postroom, oid)
                    stuck = row.status == "sending" and row.lease_owner and entered.is_set()
                    return row if stuck else None

                held = wait_for("the agent to claim and block in DATA", claimed_and_stuck, log=log)
                assert proc.poll() is None
                proc.kill()
                assert proc.wait(timeout=10) == -signal.SIGKILL
            release.set()

            row = outbox_row(postroom, oid)
            assert row.status == "sending"
            assert row.lease_owner == held.lease_owner
            assert row.attempts == 1
            remaining = (row.lease_expires_at - utcnow()).total_seconds()
            assert remaining < 5, "lease longer than POSTROOM_LEASE_SECONDS"
            # Before the lease runs out, nobody may take the row over.
            if remaining > 1.0:
                early = asyncio.run(postroom.agent().run(until_idle=True))
                assert early.sent == 0
                assert outbox_row(postroom, oid).status == "sending"
            time.sleep(max(0.0, (row.lease_expires_at - utcnow()).total_seconds()) + 0.1)

            stats = asyncio.run(postroom.agent().run(until_idle=True))
    finally:
        release.set()

    assert stats.sent == 1
    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert entry.lease_owner is None
    assert sink.data_commands == 2
    [received] = sink.received
    assert received.message["Message-ID"] == entry.message_id
    # The killed agent could not say it stopped; its silence shows it.
    states = {a.id: a.state for a in postroom.agents()}
    assert states[held.lease_owner] == "stale"
    assert list(states.values()).count("stopped") == 2  # the two in-process agents


def test_sigterm_stops_cleanly(postroom: Postroom, database_url: str, tmp_path: Path) -> None:
    sink = SmtpSink(on_data=lambda: time.sleep(0.01))  # ~1.5 s of mail for 150 emails
    log = tmp_path / "agent.log"
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        ids = queue(postroom, 150)

        with agent_process(database_url, log, POSTROOM_BATCH_SIZE="10") as proc:
            wait_for("mail to flow", lambda: sent_count(postroom) >= 10, log=log)
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"agent ignored SIGTERM; output:\n{log.read_text(errors='replace')}")
        output = log.read_text(errors="replace")
        assert code == 0, output

    [agent] = agent_rows(postroom)
    assert agent.state == "stopped", output
    assert agent.stopped_at is not None
    counts = postroom.outbox_counts()
    assert counts[OutboxStatus.SENDING] == 0
    assert counts[OutboxStatus.QUEUED] > 0, "the agent finished everything before SIGTERM"
    assert counts[OutboxStatus.SENT] == agent.sent
    assert counts[OutboxStatus.SENT] + counts[OutboxStatus.QUEUED] == len(ids)
    # Every row recorded as sent was received, once; nothing else was.
    sent_ids = {e.message_id for e in postroom.outbox(status=OutboxStatus.SENT, limit=1000)}
    received = [r.message["Message-ID"] for r in sink.received]
    assert sorted(received) == sorted(sent_ids)


def test_heartbeat_reports_host_pid_and_counts(
    postroom: Postroom, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    with smtp_server() as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        queue(postroom, 3)

        with agent_process(database_url, log) as proc:
            first = wait_for(
                "a beat reporting 3 sent",
                lambda: next((a for a in agent_rows(postroom) if a.sent == 3), None),
                log=log,
            )
            later = wait_for(
                "a later beat",
                lambda: next(
                    (a for a in agent_rows(postroom) if a.last_beat_at > first.last_beat_at),
                    None,
                ),
                log=log,
            )
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0

        assert len(srv.sink.received) == 3

    assert first.host == socket.gethostname()
    assert first.pid == proc.pid
    assert first.pid != os.getpid()
    assert first.state == "running"
    assert first.failed == 0
    assert isinstance(first.started_at, datetime)
    assert first.started_at <= first.last_beat_at < later.last_beat_at
    assert later.state == "running"
    assert later.id == first.id
    [final] = agent_rows(postroom)
    assert final.state == "stopped"
    assert final.sent == 3


def slow_running_beats(pr: Postroom, begun: threading.Event, seconds: float) -> None:
    """Each running beat's write waits ``seconds`` (a slow database); ``begun`` says one started."""

    def hook(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("UPDATE agents") and "running" in str(params):
            begun.set()
            time.sleep(seconds)

    event.listen(pr.engine, "before_cursor_execute", hook)


@pytest.mark.postgres
def test_stopped_is_the_last_state_written_even_with_a_beat_in_flight(postgres_url: str) -> None:
    # PostgreSQL only: SQLite's BEGIN IMMEDIATE queues 'stopped' behind the beat anyway.
    with Postroom(make_settings(postgres_url, heartbeat_interval=0.01)) as pr:
        begun = threading.Event()
        slow_running_beats(pr, begun, 0.3)

        async def run_briefly() -> None:
            begun.clear()
            stop = asyncio.Event()
            task = asyncio.create_task(pr.agent().run(stop=stop))
            await asyncio.to_thread(begun.wait, 10)
            stop.set()
            await asyncio.wait_for(task, 10)

        for _ in range(3):
            asyncio.run(run_briefly())
        states = [a.state for a in agent_rows(pr)]
    assert states == ["stopped"] * 3


def test_an_agent_cancelled_while_stopping_still_ends_stopped(database_url: str) -> None:
    # The service waits a bounded time for its agent, then cancels it: here while the
    # agent waits for a slow beat. It must still close up and write 'stopped'.
    with Postroom(make_settings(database_url, heartbeat_interval=0.01)) as pr:
        begun = threading.Event()
        slow_running_beats(pr, begun, 1.5)  # far longer than the wait below

        async def stop_impatiently() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(pr.agent().run(stop=stop))
            await asyncio.to_thread(begun.wait, 10)
            stop.set()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(task, 0.05)
            assert task.cancelled()

        asyncio.run(stop_impatiently())
        [agent] = agent_rows(pr)
    assert agent.state == "stopped"
    assert agent.stopped_at is not None
