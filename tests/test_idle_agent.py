"""An idle agent: what it reads instead of claiming, and how long it may sleep.

While a LISTEN hears every commit, an idle agent sleeps until the next row falls due
(at most ``LISTENING_POLL`` seconds); nothing notifies that moment, so these tests show it is read
from the queue: an email scheduled a moment ahead goes out with a one-minute poll.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from postroom import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox import OutboxStatus, Priority
from postroom.outbox.store import OutboxStore
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_wakeup import (
    LONG_POLL,
    STARTUP,
    agent_process,
    configure,
    listener_pids,
    subjects,
    wait_until,
)

WITHIN = 25.0  # seconds: well inside the one-minute poll


def next_due(pr: Postroom) -> datetime | None:
    with pr.engine.connect() as conn:
        return OutboxStore().next_due(conn)


def test_next_due_is_the_earliest_way_a_row_becomes_claimable(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [{"name": "Default", "address": "s@example.com", "host": "h"}]})
        assert next_due(pr) is None  # an empty queue: nothing will ever fall due

        later = utcnow() + timedelta(hours=2)
        scheduled = pr.send(to=["a@example.net"], subject="s", body="b", send_after=later)
        assert next_due(pr) == later

        soon = utcnow() + timedelta(hours=1)
        low = pr.send(to=["b@example.net"], subject="l", body="b", priority=Priority.LOW)
        t = tables.outbox
        with pr.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == low).values(next_attempt_at=soon))
        assert next_due(pr) == soon  # every priority is looked at, not only the first

        lapse = utcnow() + timedelta(minutes=30)
        with pr.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == scheduled)
                .values(status=OutboxStatus.SENDING.value, lease_expires_at=lapse)
            )
        assert next_due(pr) == lapse  # a lease that lapses makes its row claimable

        expiry = utcnow() + timedelta(minutes=10)
        expiring = pr.send(
            to=["c@example.net"], subject="e", body="b",
            send_after=expiry - timedelta(minutes=5), expires_at=expiry,
        )  # fmt: skip
        with pr.engine.begin() as conn:  # not due before it expires: only the sweep wants it
            conn.execute(update(t).where(t.c.id == expiring).values(next_attempt_at=later))
        assert next_due(pr) == expiry  # the expiry sweep has work then

        now_due = pr.send(to=["d@example.net"], subject="d", body="b")
        due = next_due(pr)
        assert due is not None
        assert due <= utcnow()
        assert pr.cancel(now_due).status is OutboxStatus.CANCELLED


def test_a_listening_agent_finds_a_scheduled_email_without_a_notification(
    postgres_url: str, tmp_path: Path
) -> None:
    assert LONG_POLL > 2 * WITHIN  # polling alone would send it only after a minute
    with smtp_server() as srv, Postroom(make_settings(postgres_url)) as pr:
        configure(pr, srv)
        with agent_process(postgres_url, tmp_path / "agent.log", poll_interval=LONG_POLL) as log:
            wait_until(lambda: len(listener_pids(postgres_url)) == 1, limit=STARTUP, what="LISTEN")
            # Its commit wakes the agent, which finds it not yet due and reads when it is.
            at = utcnow() + timedelta(seconds=3)
            pr.send(
                to=["r@example.net"], subject="scheduled", body="b", class_name="Default",
                send_after=at,
            )  # fmt: skip
            # Sent at its time, not at the next poll (a minute later).
            wait_until(
                lambda: "scheduled" in subjects(srv), limit=WITHIN, what="the scheduled email sent"
            )
        assert "Traceback" not in log()
