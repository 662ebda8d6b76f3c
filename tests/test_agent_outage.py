"""The agent rides out database trouble: degraded meanwhile, nothing lost, nothing resent.

The outages are real: PostgreSQL is told to refuse the test database's connections and
ends the ones it has (``ALLOW_CONNECTIONS false`` and ``pg_terminate_backend``), which is
what a restart or a failover looks like from the agent's side.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from postroom import Postroom
from postroom.agent import SenderAgent
from postroom.agent.health import AgentState, Backoff, Health, fatal_reason
from postroom.errors import DatabaseFatalError, StateError
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY, _postgres_admin_dsn, make_settings
from tests.fakes import SmtpSink, smtp_server
from tests.test_delivery import account
from tests.test_multi_agent import agent_command


def wait_for(condition: Callable[[], bool], *, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def database_refused(url: str) -> Iterator[None]:
    """PostgreSQL refuses new connections to this database and ends its open ones."""
    name = make_url(url).database
    with psycopg.connect(_postgres_admin_dsn(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


class AgentThread:
    """An agent running in an event loop of its own thread, stopped on exit."""

    def __init__(self, agent: SenderAgent) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self.agent.run(stop=self._stop))
        except BaseException as exc:  # handed to the test
            self.error = exc

    def __enter__(self) -> AgentThread:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the agent did not stop"
        assert self.error is None, f"the agent ended on {self.error!r}"


def statuses(pr: Postroom) -> Counter[OutboxStatus]:
    return Counter({s: n for s, n in pr.outbox_counts().items() if n})


@pytest.mark.postgres
def test_outage_mid_batch_keeps_what_was_sent_and_resends_nothing(postgres_url: str) -> None:
    sink = SmtpSink(data_delay=0.05)
    with smtp_server(sink) as server:
        pr = Postroom(
            make_settings(
                postgres_url,
                batch_size=40,
                lease_seconds=1.5,
                heartbeat_interval=0.2,
                connections_per_account=1,
            )
        )
        try:
            pr.apply({"accounts": [account(server.port)]})
            for n in range(40):
                pr.send(to=[f"r{n}@example.com"], subject=f"n{n}", body="b")
            with AgentThread(pr.agent()) as running:
                wait_for(lambda: len(sink.received) >= 3, limit=30, what="the batch to start")
                with database_refused(postgres_url):
                    wait_for(
                        lambda: running.agent.health.state is AgentState.DEGRADED,
                        limit=30,
                        what="the agent to show itself degraded",
                    )
                    assert "database unavailable" in (running.agent.health.reason or "")
                    # The batch goes on without the database, and its leases run out.
                    wait_for(lambda: len(sink.received) == 40, limit=60, what="the whole batch")
                    lapsed = time.monotonic() + 2 * 1.5
                    wait_for(lambda: time.monotonic() > lapsed, limit=10, what="leases to lapse")
                    assert running.agent.health.db_errors >= 2
                wait_for(
                    lambda: statuses(pr) == Counter({OutboxStatus.SENT: 40}),
                    limit=60,
                    what="every outcome written after the outage",
                )
                # Working again from its first claim after the outcomes were written.
                wait_for(
                    lambda: running.agent.health.state is AgentState.RUNNING,
                    limit=30,
                    what="the agent to work again",
                )
                assert running.agent.health.db_errors == 0
            ids = Counter(r.message["Message-ID"] for r in sink.received)
            assert len(ids) == 40
            assert max(ids.values()) == 1, "an email was sent twice"
            [row] = pr.agents()
            assert (row.state, row.db_errors, row.reason) == ("stopped", 0, None)
        finally:
            pr.close()


def test_outcomes_are_written_while_the_batch_goes_on(database_url: str) -> None:
    # One connection to a slow server: a batch of 30 takes over a second and a half.
    sink = SmtpSink(data_delay=0.05)
    with smtp_server(sink) as server:
        pr = Postroom(make_settings(database_url, batch_size=30, connections_per_account=1))
        try:
            pr.apply({"accounts": [account(server.port)]})
            for n in range(30):
                pr.send(to=[f"r{n}@example.com"], subject=f"n{n}", body="b")
            seen: list[Counter[OutboxStatus]] = []

            def sent_while_sending() -> bool:
                counts = statuses(pr)
                seen.append(counts)
                return counts[OutboxStatus.SENT] > 0 and counts[OutboxStatus.SENDING] > 0

            with AgentThread(pr.agent()):
                # Recorded once per batch, no moment would show both.
                wait_for(sent_while_sending, limit=30, what="a sent email beside claimed ones")
                wait_for(lambda: statuses(pr)[OutboxStatus.SENT] == 30, limit=30, what="all")
            assert len(sink.received) == 30
        finally:
            pr.close()


def test_a_damaged_sqlite_file_is_fatal_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    pr = Postroom(make_settings(f"sqlite:///{path}"))
    try:
        pr.engine.dispose()
        for extra in (path, path.with_name("p.db-wal"), path.with_name("p.db-shm")):
            extra.unlink(missing_ok=True)
        path.write_bytes(b"this is not a database, it is a file of the same name" * 100)
        with pytest.raises(DatabaseFatalError, match="damaged") as caught:
            asyncio.run(pr.agent().run(until_idle=True))
        assert "\n" not in str(caught.value)
    finally:
        pr.close()


def test_faults_that_cannot_heal_are_told_apart(tmp_path: Path, postgres_server: str) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"x" * 4096)
    with pytest.raises(SQLAlchemyError) as damaged:
        with create_engine(f"sqlite:///{garbage}").connect() as conn:
            conn.execute(text("SELECT * FROM sqlite_master"))
    assert "damaged" in (fatal_reason(damaged.value, started=True) or "")

    with pytest.raises(SQLAlchemyError) as schema:
        with create_engine(f"sqlite:///{tmp_path / 'empty.db'}").connect() as conn:
            conn.execute(text("SELECT * FROM outbox"))
    assert "postroom db upgrade" in (fatal_reason(schema.value, started=True) or "")

    stranger = make_url(postgres_server).set(username="no_such_role_here")
    with pytest.raises(SQLAlchemyError) as refused:
        create_engine(stranger).connect()
    assert "cannot be used as configured" in (fatal_reason(refused.value, started=False) or "")
    # Once it worked, the same words may come from a failover starting up: wait.
    assert fatal_reason(refused.value, started=True) is None

    first = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    first.execute("BEGIN IMMEDIATE")
    second = sqlite3.connect(tmp_path / "l.db", timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        second.execute("BEGIN IMMEDIATE")
    first.close()
    second.close()
    assert fatal_reason(locked.value, started=True) is None


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=0.5, cap=30.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_health_counts_errors_in_a_row_and_follows_its_table() -> None:
    health = Health()
    assert health.degrade("database unavailable: a") is True
    assert health.degrade("database unavailable: a") is False  # same spell: no new line
    assert health.degrade("database unavailable: b") is False  # still the same spell
    assert (health.reason, health.db_errors) == ("database unavailable: b", 3)
    assert health.recover() is True
    assert (health.state, health.reason, health.db_errors) == (AgentState.RUNNING, None, 0)
    health.stop()
    with pytest.raises(StateError):
        health.degrade("too late")


def agent_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(
        POSTROOM_DATABASE_URL=url, POSTROOM_SECRET_KEY=TEST_KEY, POSTROOM_POLL_INTERVAL="0.05"
    )
    return env


@pytest.mark.postgres
@pytest.mark.slow
def test_an_agent_started_before_its_database_waits_for_it(
    postgres_url: str, tmp_path: Path
) -> None:
    sink = SmtpSink()
    with smtp_server(sink) as server:
        with Postroom(make_settings(postgres_url)) as pr:
            pr.apply({"accounts": [account(server.port)]})
            pr.send(to=["a@example.com"], subject="waited", body="b")
            pr.engine.dispose()
        log = tmp_path / "agent.log"
        with database_refused(postgres_url), log.open("wb") as out:
            proc = subprocess.Popen(
                agent_command(), env=agent_env(postgres_url), stdout=out, stderr=out
            )
            try:
                wait_for(lambda: "waiting for it" in log.read_text(), limit=30, what="the wait")
                assert proc.poll() is None
            except BaseException:
                proc.kill()
                raise
        try:
            assert proc.wait(60) == 0
        finally:
            proc.kill()
        text = log.read_text()
        assert "Traceback" not in text
        assert text.count("database unavailable at start-up") == 1  # one line, not one a try
        assert [r.message["Subject"] for r in sink.received] == ["waited"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"username": "no_such_role_here"}, 'role "no_such_role_here" does not exist'),
        ({"database": "no_such_database_here"}, "does not exist"),
        ({"query": {"sslmode": "bogus"}}, "invalid sslmode value"),
    ],
    ids=["role", "database", "sslmode"],
)
def test_an_agent_that_can_never_connect_says_so_in_one_line(
    postgres_url: str, change: dict[str, Any], words: str
) -> None:
    url = make_url(postgres_url).set(**change).render_as_string(hide_password=False)
    done = subprocess.run(
        agent_command(), env=agent_env(url), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert "cannot be used as configured" in err
    assert words in err
    assert len(err.strip().splitlines()) == 1


def test_a_database_url_that_is_no_url_is_a_settings_error() -> None:
    env = agent_env("postgresql://postgres@127.0.0.1:notaport/x")
    done = subprocess.run(agent_command(), env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert err == (
        "error: invalid settings: database_url: not a valid URL "
        "(invalid literal for int() with base 10: 'notaport')"
    )


@pytest.mark.parametrize("auto_migrate", ["true", "false"])
def test_a_schema_of_a_newer_version_is_one_clear_error(tmp_path: Path, auto_migrate: str) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    Postroom(make_settings(url)).close()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    env = agent_env(url) | {"POSTROOM_AUTO_MIGRATE": auto_migrate}
    done = subprocess.run(agent_command(), env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1
    err = done.stderr.decode().strip()
    assert "Traceback" not in err
    assert "revision 9999, newer than this version" in err
    with pytest.raises(DatabaseFatalError, match="newer than this version"):
        Postroom(make_settings(url, auto_migrate=auto_migrate == "true"))


def test_a_schema_left_behind_is_one_clear_error_without_auto_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with pytest.raises(DatabaseFatalError, match="run 'postroom db upgrade'"):
        Postroom(make_settings(url, auto_migrate=False))
    Postroom(make_settings(url)).close()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0008'")
    with pytest.raises(DatabaseFatalError, match="revision 0008, this version needs"):
        Postroom(make_settings(url, auto_migrate=False))


@pytest.mark.postgres
def test_a_missing_permission_heals_a_missing_table_does_not(postgres_url: str) -> None:
    role = f"postroom_nopriv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_postgres_admin_dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        owner = create_engine(postgres_url)
        with owner.begin() as conn:
            conn.execute(text("CREATE TABLE guarded (id integer)"))
        owner.dispose()
        stranger = create_engine(make_url(postgres_url).set(username=role))
        with pytest.raises(SQLAlchemyError) as denied, stranger.connect() as conn:
            conn.execute(text("SELECT * FROM guarded"))
        stranger.dispose()
        assert "permission denied" in str(denied.value)
        # A GRANT fixes it while the agent waits: not fatal, however it is classed.
        assert fatal_reason(denied.value, started=True) is None
        with pytest.raises(SQLAlchemyError) as missing, create_engine(postgres_url).connect() as c:
            c.execute(text("SELECT * FROM no_such_table_here"))
        assert "postroom db upgrade" in (fatal_reason(missing.value, started=True) or "")
    finally:
        with psycopg.connect(_postgres_admin_dsn(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')
