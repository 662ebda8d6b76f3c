"""Priority, scheduled sends and expiry: claimed in order, not early, never late."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from email import message_from_bytes

import pytest

from postroom import Postroom
from postroom.agent.delivery import Deliverer
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, MessageError
from postroom.outbox import OutboxStatus, Outcome, Priority
from tests.conftest import case_type_with, make_settings
from tests.fakes import Received, smtp_server
from tests.test_delivery import account, run_agent


def subjects(received: list[Received]) -> list[str]:
    return [str(message_from_bytes(r.raw)["Subject"]) for r in received]


def test_due_emails_go_out_high_priority_first(database_url: str) -> None:
    settings = make_settings(database_url, batch_size=1, connections_per_account=1)
    with smtp_server() as srv, Postroom(settings) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        for name, priority in [
            ("low", Priority.LOW), ("normal", Priority.NORMAL), ("high", Priority.HIGH),
            ("low 2", Priority.LOW), ("high 2", Priority.HIGH),
        ]:  # fmt: skip
            pr.send(to=["a@example.net"], subject=name, body="b", priority=priority)
        assert {e.priority for e in pr.outbox()} == set(Priority)
        run_agent(pr)
        assert subjects(srv.sink.received) == ["high", "high 2", "normal", "low", "low 2"]


def test_a_scheduled_email_waits_for_its_time(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        at = utcnow() + timedelta(seconds=1.0)
        later = pr.send(to=["a@example.net"], subject="later", body="b", send_after=at)
        now = pr.send(to=["a@example.net"], subject="now", body="b")
        assert pr.outbox_entry(later).next_attempt_at == at
        run_agent(pr)
        assert subjects(srv.sink.received) == ["now"]
        assert pr.outbox_entry(later).status is OutboxStatus.QUEUED
        time.sleep(max(0.0, (at - utcnow()).total_seconds()) + 0.05)
        run_agent(pr)
        assert subjects(srv.sink.received) == ["now", "later"]
        assert pr.outbox_entry(later).sent_at is not None
        assert pr.outbox_entry(later).sent_at >= at  # type: ignore[operator]
        assert pr.outbox_entry(now).status is OutboxStatus.SENT


def test_an_email_past_its_expiry_is_never_sent(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        soon = utcnow() + timedelta(seconds=0.3)
        outbox_id = pr.send(to=["a@example.net"], subject="stale", body="b", expires_at=soon)
        kept = pr.send(
            to=["a@example.net"], subject="fresh", body="b", expires_at=soon + timedelta(hours=1)
        )
        time.sleep(max(0.0, (soon - utcnow()).total_seconds()) + 0.05)
        run_agent(pr)
        entry = pr.outbox_entry(outbox_id)
        assert entry.status is OutboxStatus.EXPIRED
        assert "expired before delivery" in (entry.last_error or "")
        assert entry.attempts == 0
        assert pr.outbox_entry(kept).status is OutboxStatus.SENT
        assert subjects(srv.sink.received) == ["fresh"]
        with pytest.raises(Exception, match="expired"):
            pr.retry(outbox_id)  # final: expired mail is not sent late by hand either


def test_a_retry_that_would_come_too_late_expires_instead(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    with Postroom(make_settings(url, backoff_base=60.0, backoff_max=60.0)) as pr:
        pr.apply({"accounts": [account(1)]})  # nothing listens on port 1: a transient failure
        outbox_id = pr.send(
            to=["a@example.net"], subject="s", body="b", expires_at=utcnow() + timedelta(seconds=30)
        )
        run_agent(pr)
        entry = pr.outbox_entry(outbox_id)
        assert entry.status is OutboxStatus.EXPIRED
        assert entry.attempts == 1
        assert "before its next attempt; last error:" in (entry.last_error or "")


def test_a_claimed_email_whose_time_ran_out_is_not_sent(tmp_path: object) -> None:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path}/p.db")) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        outbox_id = pr.send(
            to=["a@example.net"], subject="s", body="b", expires_at=utcnow() + timedelta(seconds=5)
        )
        with pr.engine.begin() as conn:
            [row] = pr.outbox_store.claim(conn, owner="t", limit=10, lease=60)
        # It waited for a connection past its expiry (staged by shifting the clock).
        late = row.__class__(**{**{f: getattr(row, f) for f in row.__dataclass_fields__},
                                "expires_at": utcnow() - timedelta(seconds=1)})  # fmt: skip
        deliverer = Deliverer(factory=pr.transport_factory, policy=pr.retry_policy(),
                              connections_per_account=1)  # fmt: skip

        async def attempt() -> list[Outcome]:
            try:
                return await deliverer.deliver([late], pr.sender)
            finally:
                await deliverer.close()

        [outcome] = asyncio.run(attempt())
        assert outcome.status is OutboxStatus.EXPIRED
        assert outcome.id == outbox_id
        assert srv.sink.received == []


def test_case_steps_set_priority_delay_and_expiry(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [account(2525)]})
    step = {
        "on": "created", "to": [{"address": "a@example.net"}], "subject": "s", "body": "b",
        "priority": "high", "delay_seconds": 600, "expire_after_seconds": 3600,
    }  # fmt: skip
    pr.apply(case_type_with(step))
    before = utcnow()
    case = pr.cases.create("A-B-C")
    [entry] = pr.outbox(case_id=case.id)
    assert entry.priority is Priority.HIGH
    assert (
        before + timedelta(seconds=600)
        <= entry.next_attempt_at
        <= utcnow() + timedelta(seconds=600)
    )
    assert entry.expires_at is not None
    assert entry.expires_at - entry.next_attempt_at == timedelta(seconds=3000)
    wrong: list[tuple[dict[str, object], str]] = [
        ({"delay_seconds": 600, "expire_after_seconds": 600}, "must be longer than delay_seconds"),
        ({"delay_seconds": 60, "mode": "immediate"}, "cannot be sent immediately"),
        ({"priority": "urgent"}, "'high', 'normal' or 'low'"),
    ]
    for bad, error in wrong:
        with pytest.raises(ConfigurationError, match=error):
            pr.apply(
                case_type_with({**step, "delay_seconds": None, "expire_after_seconds": None, **bad})
            )


def test_timing_errors_are_clear(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [account(2525)]})
    now = utcnow()
    cases = [
        ({"expires_at": now - timedelta(seconds=1)}, "has already passed"),
        ({"expires_at": now.replace(tzinfo=None) + timedelta(hours=1)}, "needs a time zone"),
        ({"send_after": now.replace(tzinfo=None)}, "needs a time zone"),
        (
            {"send_after": now + timedelta(hours=2), "expires_at": now + timedelta(hours=1)},
            "must come before expires_at",
        ),
    ]
    for timing, error in cases:
        with pytest.raises(MessageError, match=error):
            pr.send(to=["a@example.net"], subject="s", body="b", **timing)  # type: ignore[arg-type]
    assert pr.outbox() == []
