"""PostgreSQL trouble under running agents: sessions terminated, the server stopped a minute.

The agents are real processes (``postroom agent run``, ``postroom serve``) at the default
log level; the emails are counted at an SMTP server by Message-ID. A database error is
never fatal to an agent: it waits, replaces its connections and carries on by itself.
"""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from postroom import Postroom
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus
from tests.chaoskit import (
    TimedSink,
    agent_forever,
    agent_task,
    duplicates_per_event,
    fleet,
    healthz,
    process_env,
    received_count,
    received_ids,
    report,
    scratch_postgres,
    sent_in_outbox,
    serve_command,
    wait_for_arrivals,
    wait_until,
)
from tests.conftest import make_settings
from tests.fakes import SmtpSink, free_port, smtp_server
from tests.test_delivery import account
from tests.test_scale_out import Tally, enqueue

AGENTS = 3
BATCH = 25
LEASE = 3.0
ROUNDS = 15
STEP = 25  # emails sent after a round before the next one
TOP_UP = 1000  # queued when fewer than this are left before the last round


def terminate_other_sessions(url: str) -> tuple[int, int]:
    """``pg_terminate_backend`` on every other session of ``url``'s database.

    Waits (up to 10 s) for one of them to be inside a statement or transaction, so that
    the round hits work in progress and not only connections idle in a pool (which a
    pre-ping replaces unnoticed). Returns how many were terminated, and how many busy.
    """
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    others = "datname = current_database() AND pid <> pg_backend_pid()"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = conn.execute(
                f"SELECT count(*) FROM pg_stat_activity WHERE {others} AND state <> 'idle'"
            ).fetchone()
            if busy and busy[0] > 0:
                break
            time.sleep(0.002)
        rows = conn.execute(
            f"SELECT pg_terminate_backend(pid), state <> 'idle' FROM pg_stat_activity"
            f" WHERE {others}"
        ).fetchall()
    return sum(1 for done, _ in rows if done), sum(1 for done, busy in rows if done and busy)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_agents_ride_out_terminated_sessions(postgres_url: str, tmp_path: Path) -> None:
    sink = TimedSink(data_delay=0.02)  # slow enough that the rounds fall mid-run
    with smtp_server(sink) as srv:
        with Postroom(make_settings(postgres_url)) as pr:
            pr.apply({"accounts": [account(srv.port)]})
            message_ids = enqueue(pr, 2000)
        env = process_env(
            postgres_url,
            batch_size=BATCH,
            poll_interval=0.05,
            lease_seconds=LEASE,
            heartbeat_interval=0.5,
        )
        tally = Tally(sink)
        rounds: list[float] = []
        terminated: list[int] = []
        busy: list[int] = []
        with fleet(agent_forever(), env, tmp_path) as agents:
            for slot in range(AGENTS):
                agents.start(slot)
            wait_until(lambda: received_count(sink) >= STEP, limit=60, what="the first emails")
            for n in range(1, ROUNDS + 1):
                assert agents.exited() == {}, agents.tail(min(agents.exited()))
                sessions, in_work = terminate_other_sessions(postgres_url)
                rounds.append(time.monotonic())
                terminated.append(sessions)
                busy.append(in_work)
                wait_for_arrivals(
                    sink,
                    received_count(sink) + STEP,
                    limit=90,
                    what=f"emails to flow again after termination round {n}",
                )
                if n < ROUNDS and len(message_ids) - received_count(sink) < TOP_UP:
                    with Postroom(make_settings(postgres_url)) as pr:
                        message_ids |= enqueue(pr, TOP_UP)
            wait_until(
                lambda: tally.update().keys() >= message_ids,
                limit=180,
                what="every email to reach the server",
            )
            wait_until(
                lambda: sent_in_outbox(postgres_url) == len(message_ids),
                limit=60,
                what="every email recorded as sent",
            )
            assert agents.exited() == {}, "an agent exited on its own"
            codes = agents.stop()
        order = received_ids(sink)
    duplicates = len(order) - len(set(order))
    per_round = duplicates_per_event(sink, rounds, window=0.1)
    bound = sum(min(n, AGENTS) for n in terminated) * BATCH
    report(
        "chaos-postgres.txt",
        "terminated sessions",
        f"{len(message_ids)} emails, {AGENTS} agents (batch {BATCH}), {ROUNDS} rounds "
        f"terminating {sum(terminated)} sessions ({sum(busy)} mid-statement or transaction): "
        f"{duplicates} duplicates "
        f"(per round: {per_round}; bound {bound})",
    )
    assert codes == dict.fromkeys(range(AGENTS), 0)  # each stopped cleanly when asked
    assert sum(busy) > 0, "no round caught a session at work: nothing was tested"
    agents.assert_no_traceback()
    assert set(order) == message_ids  # nothing lost
    # A terminated session costs an agent at most the batch it had not recorded.
    assert duplicates <= bound


def agent_state(url: str) -> str | None:
    """The newest agent's state as its row says it."""
    with Postroom(make_settings(url)) as pr:
        agents = pr.agents()
    return agents[0].state if agents else None


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_agent_list_shows_an_agent_degraded_while_the_outbox_is_locked(
    postgres_url: str, tmp_path: Path
) -> None:
    # The database answers, but the outbox is out of reach: the agent says so in its row.
    sink = SmtpSink()
    tally = Tally(sink)
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with smtp_server(sink) as srv:
        with Postroom(make_settings(postgres_url)) as pr:
            pr.apply({"accounts": [account(srv.port)]})
        with psycopg.connect(dsn, autocommit=True) as admin:
            # New sessions of this scratch database give up on a lock after 1 s.
            name = make_url(postgres_url).database
            admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '1s'")
        env = process_env(postgres_url, poll_interval=0.05, heartbeat_interval=0.5)
        with fleet(agent_forever(), env, tmp_path) as agents:
            agents.start(0)
            wait_until(
                lambda: agent_state(postgres_url) == "running", limit=60, what="a running agent"
            )
            with psycopg.connect(dsn) as locker:
                locker.execute("SET lock_timeout = 0")
                locker.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
                states: list[str | None] = []

                def says_degraded() -> bool:
                    states.append(agent_state(postgres_url))
                    return states[-1] == "degraded"

                wait_until(
                    says_degraded,
                    limit=30,
                    what="the agent's row to say degraded",
                    seen=lambda: sorted(set(states), key=states.index),
                )
                listed = subprocess.run(
                    [agent_forever()[0], "agent", "list"],
                    env={**process_env(postgres_url), "COLUMNS": "400"},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                locker.rollback()
            with Postroom(make_settings(postgres_url)) as pr:
                pr.send(to=["after@example.net"], subject="after", body="B.", class_name="Default")
                message_ids = {e.message_id for e in pr.outbox(limit=10)}
            wait_until(
                lambda: tally.update().keys() >= message_ids,
                limit=60,
                what="an email sent once the lock is gone",
            )
            wait_until(
                lambda: agent_state(postgres_url) == "running", limit=60, what="running again"
            )
            assert agents.exited() == {}, agents.tail(0)
            codes = agents.stop()
    assert listed.returncode == 0, listed.stderr
    shown = " ".join(listed.stdout.split())
    assert "degraded" in shown, shown
    assert "lock timeout" in shown, shown  # the reason, in the database's words
    assert codes == {0: 0}
    agents.assert_no_traceback()


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_the_service_waits_out_a_stopped_database(tmp_path: Path) -> None:
    outage = 60.0
    count = 100
    sink = SmtpSink()
    tally = Tally(sink)
    with scratch_postgres() as pg, smtp_server(sink) as srv:
        with Postroom(make_settings(pg.url)) as pr:
            pr.apply({"accounts": [account(srv.port)]})
        port = free_port()
        env = process_env(pg.url, poll_interval=0.05, heartbeat_interval=0.5)
        with fleet(serve_command(port), env, tmp_path) as service:
            service.start(0)
            wait_until(
                lambda: (h := healthz(port)) is not None and h[0] == 200,
                limit=60,
                what="the service to answer 200 on /healthz",
            )
            # Queued while the database is up, due only once it is down.
            with Postroom(make_settings(pg.url)) as pr:
                due = utcnow() + timedelta(seconds=5)
                for n in range(count):
                    pr.send(to=[f"user{n}@example.net"], subject=f"n{n}", body="B.",
                            class_name="Default", send_after=due)  # fmt: skip
                message_ids = {e.message_id for e in pr.outbox(limit=count + 10)}
            assert len(message_ids) == count
            stopped = time.monotonic()
            logged = service.log_size(0)
            pg.stop()
            assert received_count(sink) == 0, "sent before the outage: nothing was tested"

            def degraded_and_unavailable() -> bool:
                health = healthz(port)
                if health is None:
                    return False
                code, body = health
                database = body.get("database") or {}
                return (
                    code == 503
                    and body.get("status") == "unavailable"
                    and database.get("reachable") is False
                    and agent_task(body).get("state") == "degraded"
                )

            wait_until(
                degraded_and_unavailable,
                limit=40,
                what="/healthz: 503, unavailable, database unreachable, agent degraded",
            )
            seen: list[tuple[int, str | None]] = []
            while time.monotonic() - stopped < outage:
                assert service.exited() == {}, f"the service exited:\n{service.tail(0)}"
                health = healthz(port)
                assert health is not None, "the service stopped answering"
                seen.append((health[0], agent_task(health[1]).get("state")))
                time.sleep(1.0)  # paces the checks; the outage itself is the wait
            assert {code for code, _ in seen} == {503}, seen
            _, body = healthz(port) or (0, {})
            task = agent_task(body)
            assert task.get("reason"), body  # says why
            assert task.get("consecutive_db_errors", 0) >= 1, body
            assert isinstance((body.get("database") or {}).get("error"), str), body
            assert received_count(sink) == 0
            # A line when the trouble starts (or changes), not one per try or per request:
            # one per background task (agent, webhooks, inbound) and one from the agent's
            # LISTEN connection (the wake-up), which falls back to polling.
            during = service.logged_since(0, logged)
            assert len(during) <= 4, "\n".join(during)
            assert sum("wake-up:" in line for line in during) <= 1, "\n".join(during)

            pg.start()
            wait_until(
                lambda: tally.update().keys() >= message_ids,
                limit=90,  # the agent's wait is capped at 30 s
                what="the emails queued before the outage to be sent after it",
            )
            wait_until(
                lambda: (
                    (h := healthz(port)) is not None
                    and h[0] == 200
                    and h[1].get("status") == "ok"
                    and agent_task(h[1]).get("state") == "running"
                ),
                limit=60,
                what="/healthz to answer 200 with the agent running",
            )
            _, body = healthz(port) or (0, {})
            assert agent_task(body).get("consecutive_db_errors") == 0, body
            assert agent_task(body).get("restarts") == 0, body  # it resumed by itself
            assert service.exited() == {}, "the service was restarted"
            with Postroom(make_settings(pg.url)) as pr:
                assert pr.outbox_counts().get(OutboxStatus.SENT, 0) == count
            codes = service.stop()
        order = received_ids(sink)
    report(
        "chaos-postgres.txt",
        "database stopped",
        f"{outage:.0f} s outage under postroom serve: {count} emails queued before it, "
        f"{len(set(order))} sent after it, {len(order) - len(set(order))} duplicates",
    )
    assert codes[0] == 0  # SIGTERM stops the service cleanly
    service.assert_no_traceback()
    assert sorted(order) == sorted(message_ids)  # each once
