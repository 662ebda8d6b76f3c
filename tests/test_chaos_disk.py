"""SQLite on a disk that fills up while the agent delivers: it waits, then resumes by itself.

The database lives on a tmpfs of the test's own (mounting needs root: the test skips
without it, except under CI). The service (``postroom serve``) shows the embedded
agent's condition on ``/healthz``: the agent's own row cannot say it while the disk is
full, since saying it is a write.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postroom import Postroom
from tests.chaoskit import (
    agent_task,
    fill_up,
    fleet,
    free_bytes,
    healthz,
    process_env,
    received_count,
    received_ids,
    report,
    sent_in_outbox,
    serve_command,
    small_filesystem,
    wait_until,
)
from tests.conftest import make_settings
from tests.fakes import SmtpSink, free_port, smtp_server
from tests.test_delivery import account
from tests.test_scale_out import Tally, enqueue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EMAILS = 600
BATCH = 50


def empty_the_wal(database: Path) -> None:
    """Checkpoint SQLite's write-ahead log and truncate it to nothing.

    A WAL keeps its size once grown and is written over from the start, so writes could
    go on in a full filesystem; emptied, the agent's next commits need new space.
    """
    with sqlite3.connect(database, timeout=30) as conn:
        for _ in range(100):  # bounded: a checkpoint is refused while a writer holds on
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return
    pytest.fail("could not checkpoint the WAL")


def is_healthy(port: int) -> bool:
    health = healthz(port)
    return (
        health is not None and health[0] == 200 and agent_task(health[1]).get("state") == "running"
    )


def test_a_full_disk_holds_the_agent_until_space_is_freed(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", megabytes=48) as disk:
        database = disk / "postroom.db"
        url = f"sqlite:///{database}"
        sink = SmtpSink(data_delay=0.02)  # slow enough that the disk fills mid-run
        tally = Tally(sink)
        with smtp_server(sink) as srv:
            with Postroom(make_settings(url)) as pr:
                pr.apply({"accounts": [account(srv.port)]})
                message_ids = enqueue(pr, EMAILS)
            port = free_port()
            env = process_env(url, poll_interval=0.05, heartbeat_interval=0.5, batch_size=BATCH)
            with fleet(serve_command(port), env, tmp_path) as service:
                service.start(0)
                wait_until(lambda: is_healthy(port), limit=60, what="the service to be healthy")
                wait_until(lambda: received_count(sink) >= 50, limit=60, what="the first emails")
                empty_the_wal(database)
                logged = service.log_size(0)
                filler = fill_up(disk)
                at_full = received_count(sink)
                assert free_bytes(disk) == 0

                def degraded(errors: int) -> bool:
                    """/healthz: 503, the agent degraded after ``errors`` database errors."""
                    health = healthz(port)
                    if health is None or health[0] != 503:
                        return False
                    task = agent_task(health[1])
                    return (
                        health[1].get("status") == "degraded"  # the database answers reads
                        and task.get("state") == "degraded"
                        and task.get("consecutive_db_errors", 0) >= errors
                    )

                wait_until(lambda: degraded(1), limit=60, what="the agent to show degraded")
                # It keeps waiting, trying again with a growing delay (0.5 s, 1 s, 2 s, ...).
                wait_until(
                    lambda: degraded(3), limit=60, what="the agent to try again, disk still full"
                )
                _, body = healthz(port) or (0, {})
                assert agent_task(body).get("reason"), body  # says why
                assert service.exited() == {}, service.tail(0)
                # What it held may still go out; it claims nothing more meanwhile.
                assert received_count(sink) - at_full <= 2 * BATCH

                # A line when the trouble starts (or changes), not one per try.
                during = service.logged_since(0, logged)
                assert len(during) <= 3, "\n".join(during)
                filler.unlink()
                wait_until(
                    lambda: tally.update().keys() >= message_ids,
                    limit=120,
                    what="every email to be sent once space was freed",
                )
                wait_until(
                    lambda: sent_in_outbox(url) == EMAILS,
                    limit=60,
                    what="every email recorded as sent",
                )
                wait_until(lambda: is_healthy(port), limit=60, what="the agent to be running")
                _, body = healthz(port) or (0, {})
                assert agent_task(body).get("restarts") == 0, body  # resumed by itself
                assert agent_task(body).get("consecutive_db_errors") == 0, body
                assert service.exited() == {}, "the service was restarted"
                codes = service.stop()
            order = received_ids(sink)
    report(
        "chaos-sqlite.txt",
        "disk full",
        f"{EMAILS} emails; disk filled after {at_full} were sent; "
        f"{len(order) - len(set(order))} duplicates",
    )
    assert codes[0] == 0  # SIGTERM stops the service cleanly
    service.assert_no_traceback()
    assert set(order) == message_ids  # nothing lost
