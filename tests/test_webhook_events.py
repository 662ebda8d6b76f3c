"""Webhook events are written with the change they report: one per change, none otherwise."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.agent.recording import record_outcomes
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import CredentialsRejectedError
from postroom.outbox import OutboxStatus
from postroom.outbox.models import DeliveryReport, NewEmail
from postroom.outbox.outcome import decide, expired
from postroom.outbox.status import Hold
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import EventType
from tests.conftest import case_type_with, make_settings
from tests.fakes import ServerInfo, smtp_server

SENDER = "sender@example.com"
ALICE = "alice@example.net"
BOB = "bob@example.net"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Nothing listens there, and a loopback URL is refused before any attempt anyway.
URL = "https://127.0.0.1:9/events"


@pytest.fixture
def pr(database_url: str) -> Iterator[Postroom]:
    # Two attempts at most: a recipient deferred twice is given up at once, no waiting.
    with Postroom(make_settings(database_url, max_attempts=2)) as postroom:
        yield postroom


@pytest.fixture
def srv() -> Iterator[ServerInfo]:
    with smtp_server() as server:
        yield server


def subscribe(
    pr: Postroom, name: str = "app", events: Iterable[EventType] = EventType, **fields: Any
) -> None:
    endpoint = WebhookEndpoint(name=name, url=URL, events=list(events), secret=SECRET, **fields)
    with pr.engine.begin() as conn:
        pr.webhook_store.put(conn, endpoint)


def with_account(pr: Postroom, port: int, **records: Any) -> None:
    account = {"name": "Default", "address": SENDER, "host": "127.0.0.1", "port": port}
    pr.apply({"accounts": [{**account, "security": "none"}], **records})


def heard(pr: Postroom, endpoint: str = "app") -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event on its way to ``endpoint``, in the order written."""
    e, d = tables.webhook_events, tables.webhook_deliveries
    query = (
        select(e.c.type, e.c.payload)
        .join(d, d.c.event_id == e.c.id)
        .where(d.c.endpoint == endpoint)
        .order_by(d.c.id)
    )
    with pr.engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for kind, payload in rows:
        body = json.loads(payload)
        assert body["type"] == kind
        assert set(body) == {"type", "timestamp", "data"}
        out.append((kind, body["data"]))
    return out


def types(pr: Postroom, endpoint: str = "app") -> list[str]:
    return [kind for kind, _ in heard(pr, endpoint)]


def stored(pr: Postroom) -> tuple[int, int]:
    """How many event rows and delivery rows there are."""
    with pr.engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(tables.webhook_events))
        deliveries = conn.execute(select(func.count()).select_from(tables.webhook_deliveries))
        return int(events.scalar_one()), int(deliveries.scalar_one())


def run_agent(pr: Postroom) -> None:
    asyncio.run(pr.agent().run(until_idle=True))


def new_email(*to: str, subject: str = "Hello") -> NewEmail:
    message = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\nBody\r\n".encode()
    return NewEmail(
        message_id=f"<{subject.lower()}@example.com>",
        account="Default",
        subject=subject,
        mail_from=SENDER,
        recipients=to,
        message=message,
    )


# --- emails -----------------------------------------------------------------------------


def test_a_delivered_email_is_queued_then_sent_once(pr: Postroom, srv: ServerInfo) -> None:
    with_account(pr, srv.port)
    subscribe(pr)
    outbox_id = pr.send(to=[ALICE, BOB], subject="Offer", body="Body text.", class_name="Default")
    run_agent(pr)
    run_agent(pr)  # nothing left to do: nothing more to report
    assert [r.rcpt_tos for r in srv.sink.received] == [[ALICE, BOB]]
    entry = pr.outbox_entry(outbox_id)
    assert types(pr) == ["email.queued", "email.sent"]
    assert stored(pr) == (2, 2)
    [(_, queued), (_, sent)] = heard(pr)
    assert queued == {
        "email_id": outbox_id,
        "message_id": entry.message_id,
        "case_id": None,
        "account": "Default",
        "subject": "Offer",
        "status": "queued",
    }
    assert sent == {**queued, "status": "sent"}
    with pr.engine.connect() as conn:
        ids = conn.execute(select(tables.webhook_events.c.id)).scalars().all()
    assert len(set(ids)) == 2


def test_a_retry_reports_nothing_and_the_first_delivery_once(pr: Postroom, srv: ServerInfo) -> None:
    srv.sink.rcpt_replies[BOB] = "450 4.2.1 try later"
    with_account(pr, srv.port)
    subscribe(pr)
    outbox_id = pr.send(to=[ALICE, BOB], subject="Offer", body="b", class_name="Default")
    run_agent(pr)  # Alice accepted, Bob deferred (retry), then deferred again and given up
    entry = pr.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    [(_, queued), (_, sent)] = heard(pr)
    assert (queued["status"], sent["status"]) == ("queued", "retry")  # sent while Bob waited


def test_a_refused_email_is_reported_failed_with_its_error(pr: Postroom, srv: ServerInfo) -> None:
    srv.sink.rcpt_replies[ALICE] = "550 5.1.1 no such user"
    with_account(pr, srv.port)
    subscribe(pr)
    outbox_id = pr.send(to=[ALICE], subject="Offer", body="b", class_name="Default")
    run_agent(pr)
    assert pr.outbox_entry(outbox_id).status is OutboxStatus.FAILED
    assert srv.sink.received == []
    [(_, _), (kind, failed)] = heard(pr)
    assert kind == "email.failed"
    assert failed["status"] == "failed"
    assert "550" in failed["error"]
    assert "no such user" in failed["error"]


def test_expiry_is_reported_whether_waiting_or_claimed(pr: Postroom) -> None:
    with_account(pr, 9)
    subscribe(pr)
    soon = utcnow() + timedelta(minutes=5)
    waiting = pr.send(to=[ALICE], subject="Waiting", body="b", expires_at=soon)
    with pr.engine.begin() as conn:
        # As the agent's expiry pass will see it once its time has come.
        assert [e[0] for e in pr.outbox_store.expire_due(conn, now=soon)] == [waiting]
        assert pr.outbox_store.expire_due(conn, now=soon) == []  # once
    claimed_id = pr.send(to=[ALICE], subject="Claimed", body="b", expires_at=soon)
    with pr.engine.begin() as conn:
        [row] = pr.outbox_store.claim(conn, owner="a", limit=5, lease=60)
    assert row.id == claimed_id
    ran_out = [expired(row, utcnow())]
    record_outcomes(pr.engine, pr.outbox_store, ran_out, {row.id: row}, owner="a", hold_delay=float)
    assert pr.outbox_entry(claimed_id).status is OutboxStatus.EXPIRED
    got = [(kind, data["email_id"], data["status"]) for kind, data in heard(pr)]
    assert got == [
        ("email.queued", waiting, "queued"),
        ("email.expired", waiting, "expired"),
        ("email.queued", claimed_id, "queued"),
        ("email.expired", claimed_id, "expired"),
    ]


def test_held_and_queued_again(pr: Postroom) -> None:
    with_account(pr, 9)
    subscribe(pr)
    with pr.engine.begin() as conn:
        loop = pr.outbox_store.enqueue(conn, new_email(ALICE, subject="Loop"), hold=Hold.LOOP)
        other = pr.outbox_store.enqueue(conn, new_email(BOB, subject="Other"))
    pr.retry(loop)  # a person lets it go: back in the queue
    assert pr.outbox_entry(loop).status is OutboxStatus.QUEUED
    with pr.engine.begin() as conn:
        rows = pr.outbox_store.claim(conn, owner="a", limit=5, lease=60)
    refused = CredentialsRejectedError("535 5.7.8 bad credentials", code=535)
    outcomes = [decide(r, refused, policy=pr.retry_policy(), now=utcnow()) for r in rows]
    claimed = {r.id: r for r in rows}
    record_outcomes(pr.engine, pr.outbox_store, outcomes, claimed, owner="a", hold_delay=float)
    assert {pr.outbox_entry(i).status for i in (loop, other)} == {OutboxStatus.HELD}
    with pr.engine.begin() as conn:
        assert pr.outbox_store.release_held(conn, "Default") == 2  # the account works again
        assert pr.outbox_store.release_held(conn, "Default") == 0
    got = [(kind, data["email_id"], data.get("reason")) for kind, data in heard(pr)]
    assert got[:3] == [
        ("email.held", loop, "loop"),
        ("email.queued", other, None),
        ("email.queued", loop, None),
    ]
    # One batch of outcomes, then one release: each row once per change.
    assert sorted(got[3:5]) == sorted(("email.held", i, "account") for i in (loop, other))
    assert sorted(got[5:]) == sorted(("email.queued", i, None) for i in (loop, other))


def test_a_lost_lease_reports_nothing(pr: Postroom) -> None:
    with_account(pr, 9)
    subscribe(pr)
    outbox_id = pr.send(to=[ALICE], subject="Offer", body="b")
    with pr.engine.begin() as conn:
        [first] = pr.outbox_store.claim(conn, owner="a", limit=5, lease=0)
    with pr.engine.begin() as conn:  # the lease ran out: another agent takes the row over
        [second] = pr.outbox_store.claim(conn, owner="b", limit=5, lease=60)
    assert first.id == second.id == outbox_id
    accepted = DeliveryReport(accepted=(ALICE,), reply="2.0.0 OK")

    def record(owner: str, row: Any) -> Any:
        outcome = decide(row, accepted, policy=pr.retry_policy(), now=utcnow())
        return record_outcomes(
            pr.engine, pr.outbox_store, [outcome], {row.id: row}, owner=owner, hold_delay=float
        )

    assert record("a", first).lost == 1
    assert types(pr) == ["email.queued"]
    assert record("b", second).sent == 1
    assert types(pr) == ["email.queued", "email.sent"]


def test_an_email_that_could_not_be_built_is_reported_failed(pr: Postroom) -> None:
    step = {"on": "created", "to": [{"address": ALICE}], "subject": "Hi", "body": "<p>b</p>"}
    pr.apply(case_type_with(step))  # no account at all: the email cannot be built
    subscribe(pr)
    case = pr.cases.create("A-B-C")
    [entry] = pr.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.FAILED
    assert types(pr) == ["case.created", "email.failed"]
    _, failed = heard(pr)[1]
    assert failed["email_id"] == entry.id
    assert failed["case_id"] == case.id
    assert failed["error"] == entry.last_error


# --- cases ------------------------------------------------------------------------------


def test_cases_report_creation_and_every_status_change(pr: Postroom) -> None:
    pr.apply(
        {
            **case_type_with({"on": "created", "set_status": "Open"}),
            "operators": [{"id": "carol", "name": "Carol", "email": "carol@example.com"}],
        }
    )
    subscribe(pr)
    case = pr.cases.create("A-B-C", operator="carol")
    pr.cases.set_status(case.id, "Open")  # staying in a status is no change
    pr.cases.set_status(case.id, "Resolved-Completed")
    assert heard(pr) == [
        (
            "case.created",
            {"case_id": case.id, "case_type": "A-B-C", "status": "New", "created_by": "carol"},
        ),
        (
            "case.status_changed",
            {
                "case_id": case.id,
                "case_type": "A-B-C",
                "from": "New",
                "to": "Open",
                "actor": "carol",
            },
        ),
        (
            "case.status_changed",
            {
                "case_id": case.id,
                "case_type": "A-B-C",
                "from": "Open",
                "to": "Resolved-Completed",
                "actor": "postroom",
            },
        ),
    ]


def test_a_rolled_back_change_leaves_no_event(pr: Postroom) -> None:
    pr.apply(case_type_with({"on": "created", "set_status": "Open"}))
    subscribe(pr)

    def written(conn: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(tables.webhook_events)).scalar())

    def fail(conn: Any, case_id: str) -> None:
        # Inside the case's transaction its events are there: created, status changed.
        assert written(conn) == 2
        raise RuntimeError("the caller's bookkeeping failed")

    with pytest.raises(RuntimeError):
        pr.cases.create("A-B-C", record=fail)

    def enqueue_then_fail() -> None:
        with pr.engine.begin() as conn:
            pr.outbox_store.enqueue(conn, new_email(ALICE))
            assert written(conn) == 1
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert pr.cases.recent() == []
    assert stored(pr) == (0, 0)


# --- who hears what ---------------------------------------------------------------------


def test_each_endpoint_gets_only_the_types_it_asked_for(pr: Postroom, srv: ServerInfo) -> None:
    with_account(pr, srv.port, **case_type_with({"on": "created", "set_status": "Open"}))
    subscribe(pr, "everything")
    subscribe(pr, "sent-only", [EventType.EMAIL_SENT])
    subscribe(pr, "switched-off", enabled=False)
    pr.cases.create("A-B-C")
    pr.send(to=[ALICE], subject="Offer", body="b", class_name="Default")
    run_agent(pr)
    assert types(pr, "everything") == [
        "case.created",
        "case.status_changed",
        "email.queued",
        "email.sent",
    ]
    assert types(pr, "sent-only") == ["email.sent"]
    assert types(pr, "switched-off") == []
    # One event row per change, one delivery row per endpoint that wants it.
    assert stored(pr) == (4, 5)
    [(_, everything)] = [e for e in heard(pr, "everything") if e[0] == "email.sent"]
    assert heard(pr, "sent-only") == [("email.sent", everything)]


def test_without_endpoints_nothing_is_written(pr: Postroom, srv: ServerInfo) -> None:
    srv.sink.rcpt_replies[BOB] = "550 5.1.1 no such user"
    with_account(pr, srv.port, **case_type_with({"on": "created", "set_status": "Open"}))
    case = pr.cases.create("A-B-C")
    pr.cases.set_status(case.id, "Resolved-Completed")
    pr.send(to=[ALICE], subject="Offer", body="b", class_name="Default")
    pr.send(to=[BOB], subject="Refused", body="b", class_name="Default")
    run_agent(pr)
    assert len(srv.sink.received) == 1
    assert stored(pr) == (0, 0)
