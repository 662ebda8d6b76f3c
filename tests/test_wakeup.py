"""Idle agents woken by commits: NOTIFY across processes, a signal within one, polling after.

Every agent here polls only once a minute (the longest poll interval), so an email
delivered within the tests' bounded waits was delivered because its commit woke the agent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from postroom import Postroom
from postroom.db.listen import APPLICATION_NAME
from postroom.outbox import OutboxStatus
from postroom.outbox.wakeup import Polling, Signalled, announce, wakeup_for
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import ServerInfo, smtp_server

SENDER = "sender@example.com"
LONG_POLL = 60.0  # the longest poll interval allowed
WOKEN_WITHIN = 20.0  # well inside LONG_POLL: only a wake-up delivers in time
STARTUP = 90.0  # a process start on a loaded machine (imports, migrations)
TRACEBACK = "Traceback (most recent call last)"


def wait_until(check: Callable[[], bool], *, limit: float, what: str) -> None:
    """Check every 50 ms for at most ``limit`` seconds; fail naming ``what``."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(0.05)


def configure(pr: Postroom, srv: ServerInfo) -> None:
    pr.apply(
        {
            "accounts": [
                {
                    "name": "Default",
                    "address": SENDER,
                    "host": srv.host,
                    "port": srv.port,
                    "security": "none",
                }
            ]
        }
    )


def send(pr: Postroom, subject: str) -> None:
    pr.send(to=["reader@example.net"], subject=subject, body="Body.", class_name="Default")


def subjects(srv: ServerInfo) -> set[str]:
    with srv.sink.lock:
        return {str(r.message["Subject"]) for r in srv.sink.received}


def send_and_expect(pr: Postroom, srv: ServerInfo, subject: str, *, within: float) -> None:
    send(pr, subject)
    wait_until(lambda: subject in subjects(srv), limit=within, what=f"{subject!r} delivered")


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def listener_pids(url: str) -> list[int]:
    """Backends of the database at ``url`` that LISTEN for agents' wake-ups."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchall()
    return sorted(r[0] for r in rows)


def terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


@contextmanager
def agent_process(url: str, log: Path, *, poll_interval: float) -> Iterator[Callable[[], str]]:
    """``postroom agent run`` (one process) on ``url``; yields a reader of its log."""
    exe = Path(sys.executable).parent / "postroom"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(
        POSTROOM_DATABASE_URL=url,
        POSTROOM_SECRET_KEY=TEST_KEY,
        POSTROOM_POLL_INTERVAL=str(poll_interval),
        POSTROOM_HEARTBEAT_INTERVAL="0.5",
        POSTROOM_WORKERS="1",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "agent", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield lambda: log.read_text(errors="replace")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def agent_in_thread(pr: Postroom) -> Iterator[None]:
    """Run ``pr``'s agent on an event loop of its own until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(pr.agent().run(stop=stop))
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="agent")
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
    assert not thread.is_alive(), "the agent did not stop"
    assert failure == []


def registered(pr: Postroom) -> bool:
    return len(pr.agents()) > 0


# --- in one process --------------------------------------------------------------------


def test_a_commit_wakes_the_agent_of_the_same_process(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url, poll_interval=LONG_POLL)) as pr:
        configure(pr, srv)
        with agent_in_thread(pr):
            wait_until(lambda: registered(pr), limit=STARTUP, what="the agent to register")
            for n in range(3):
                send_and_expect(pr, srv, f"in-process {n}", within=WOKEN_WITHIN)
        assert pr.outbox_counts()[OutboxStatus.SENT] == 3


def test_waiters_wake_after_the_commit_and_not_for_a_rollback(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        configure(pr, srv)

        def rolled_back() -> None:
            with pr.engine.connect() as conn, conn.begin() as tx:
                announce(conn)
                tx.rollback()

        async def scenario() -> None:
            waiter = wakeup_for(pr.engine, enabled=True)
            await waiter.start()
            try:
                await asyncio.to_thread(rolled_back)
                assert await waiter.wait(0.3) is False
                await asyncio.to_thread(send, pr, "after commit")
                assert await waiter.wait(WOKEN_WITHIN) is True
                # Woken only once the row was committed: another connection sees it.
                assert pr.outbox_counts()[OutboxStatus.QUEUED] == 1
            finally:
                await waiter.close()

        asyncio.run(scenario())


def test_a_wake_up_while_busy_is_kept_for_the_next_wait(sqlite_postroom: Postroom) -> None:
    async def scenario() -> None:
        waiter = wakeup_for(sqlite_postroom.engine, enabled=True)
        await waiter.start()
        try:

            def commit() -> None:
                with sqlite_postroom.engine.begin() as conn:
                    announce(conn)
                    conn.execute(text("SELECT 1"))

            await asyncio.to_thread(commit)  # nobody waiting yet: the agent is "busy"
            assert await waiter.wait(WOKEN_WITHIN) is True
        finally:
            await waiter.close()

    asyncio.run(scenario())


def test_wakeup_off_polls_only(database_url: str) -> None:
    settings = make_settings(database_url, poll_interval=0.2, wakeup=False)
    with smtp_server() as srv, Postroom(settings) as pr:
        assert isinstance(wakeup_for(pr.engine, enabled=False), Polling)
        configure(pr, srv)
        with agent_in_thread(pr):
            wait_until(lambda: registered(pr), limit=STARTUP, what="the agent to register")
            send_and_expect(pr, srv, "polled", within=30)
            if database_url.startswith("postgresql"):
                assert listener_pids(database_url) == []


def test_wakeup_on_signals_on_every_database(sqlite_postroom: Postroom) -> None:
    assert isinstance(wakeup_for(sqlite_postroom.engine, enabled=True), Signalled)


# --- across processes (PostgreSQL) -------------------------------------------------------


@pytest.mark.postgres
def test_notify_wakes_an_agent_in_another_process(postgres_url: str, tmp_path: Path) -> None:
    with smtp_server() as srv, Postroom(make_settings(postgres_url)) as pr:
        configure(pr, srv)
        with agent_process(postgres_url, tmp_path / "agent.log", poll_interval=LONG_POLL) as log:
            wait_until(lambda: len(listener_pids(postgres_url)) == 1, limit=STARTUP, what="LISTEN")
            for n in range(3):
                send_and_expect(pr, srv, f"notified {n}", within=WOKEN_WITHIN)
        assert TRACEBACK not in log()


@pytest.mark.postgres
def test_the_listener_reconnects_after_its_backend_is_terminated(
    postgres_url: str, tmp_path: Path
) -> None:
    with smtp_server() as srv, Postroom(make_settings(postgres_url)) as pr:
        configure(pr, srv)
        with agent_process(postgres_url, tmp_path / "agent.log", poll_interval=LONG_POLL) as log:
            wait_until(lambda: len(listener_pids(postgres_url)) == 1, limit=STARTUP, what="LISTEN")
            [first] = listener_pids(postgres_url)
            send_and_expect(pr, srv, "before", within=WOKEN_WITHIN)

            terminate(postgres_url, [first])
            # Queued while the listener may be down: looked for once it listens again.
            send_and_expect(pr, srv, "meanwhile", within=WOKEN_WITHIN)
            wait_until(
                lambda: (
                    len(listener_pids(postgres_url)) == 1 and listener_pids(postgres_url) != [first]
                ),
                limit=60,
                what="a new LISTEN connection",
            )
            send_and_expect(pr, srv, "after", within=WOKEN_WITHIN)
        text_ = log()
        assert text_.count("wake-up: no LISTEN connection") == 1
        assert "wake-up: listening again" in text_
        assert TRACEBACK not in text_


@pytest.fixture
def own_role(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A login role of the test's own, and ``postgres_url`` as that role."""
    role = f"postroom_wake_{uuid.uuid4().hex[:10]}"
    admin = libpq_url(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    try:
        yield role, make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_polling_delivers_while_nobody_listens(
    postgres_url: str, own_role: tuple[str, str], tmp_path: Path
) -> None:
    role, agent_url = own_role
    with smtp_server() as srv, Postroom(make_settings(postgres_url)) as pr:
        configure(pr, srv)
        with agent_process(agent_url, tmp_path / "agent.log", poll_interval=1.0) as log:
            wait_until(lambda: len(listener_pids(postgres_url)) == 1, limit=STARTUP, what="LISTEN")
            send_and_expect(pr, srv, "heard", within=WOKEN_WITHIN)

            # The agent keeps its pooled connections; the listener cannot come back.
            set_login(postgres_url, role, allowed=False)
            terminate(postgres_url, listener_pids(postgres_url))
            wait_until(
                lambda: "wake-up: no LISTEN connection" in log(),
                limit=60,
                what="the agent to notice the lost listener",
            )
            assert listener_pids(postgres_url) == []
            send_and_expect(pr, srv, "polled", within=30)  # the NOTIFY reached nobody

            set_login(postgres_url, role, allowed=True)
            wait_until(lambda: "wake-up: listening again" in log(), limit=60, what="LISTEN again")
        assert TRACEBACK not in log()


def set_login(url: str, role: str, *, allowed: bool) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{role}" {"LOGIN" if allowed else "NOLOGIN"}')
