"""Suppressed recipients at sending: never attempted at the real SMTP server, marked on the row."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from postroom import Postroom
from postroom.db import tables
from postroom.outbox import OutboxStatus
from postroom.outbox.models import RecipientState
from postroom.suppression import EVERYWHERE, SuppressionReason
from postroom.webhooks.endpoints import WebhookEndpoint
from tests.conftest import make_settings
from tests.fakes import smtp_server

SENDER = "sender@example.com"
ALICE = "alice@example.net"
BOB = "bob@example.net"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def records(port: int, *, immediate: bool = False) -> dict[str, Any]:
    """A Default and an Other account on the test server, and a case type that writes."""
    step: dict[str, Any] = {
        "on": "created",
        "to": [{"address": ALICE}, {"address": BOB}],
        "subject": "Your case",
        "body": "<p>Hello</p>",
    }
    if immediate:
        step["mode"] = "immediate"
    accounts = [
        {"name": n, "address": SENDER, "host": "127.0.0.1", "port": port, "security": "none"}
        for n in ("Default", "Other")
    ]
    case_type = {"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-", "steps": [step]}
    return {"accounts": accounts, "case_types": [case_type]}


def run_agent(pr: Postroom) -> None:
    asyncio.run(pr.agent().run(until_idle=True))


def subscribe(pr: Postroom) -> None:
    """An endpoint that wants email.suppressed (nothing is delivered: no dispatcher runs)."""
    endpoint = WebhookEndpoint(
        name="app", url="https://hooks.example.com/in", events=["email.suppressed"], secret=SECRET
    )
    with pr.engine.begin() as conn:
        pr.webhook_store.put(conn, endpoint)


def suppressed_events(pr: Postroom) -> list[dict[str, Any]]:
    e = tables.webhook_events
    with pr.engine.connect() as conn:
        rows = conn.execute(select(e.c.payload).where(e.c.type == "email.suppressed")).all()
    return [json.loads(r.payload) for r in rows]


def test_a_suppressed_recipient_is_not_attempted(postroom: Postroom) -> None:
    subscribe(postroom)
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        postroom.suppress(BOB.upper(), detail="asked by phone", operator="carol")
        case = postroom.cases.create("A-B-C")
        run_agent(postroom)
        # A second run claims nothing again and changes nothing.
        run_agent(postroom)

    [received] = srv.sink.received
    assert received.rcpt_tos == [ALICE]  # the server never heard of Bob
    assert received.message["To"] == f"{ALICE}, {BOB}"  # the message itself is unchanged
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.SENT
    by_address = {r.address: r for r in entry.recipients}
    assert by_address[ALICE].state is RecipientState.ACCEPTED
    bob = by_address[BOB]
    assert bob.state is RecipientState.SUPPRESSED
    assert bob.text.startswith("suppressed since ")
    assert "manual (asked by phone)" in bob.text
    history = [h for h in postroom.cases.get(case.id).history if h.action == "email-suppressed"]
    assert [h.detail for h in history] == [
        f"outbox #{entry.id} 'Your case' not sent to {BOB} ({bob.text})"
    ]
    [event] = suppressed_events(postroom)
    assert event["type"] == "email.suppressed"
    assert event["data"]["email_id"] == entry.id
    assert event["data"]["case_id"] == case.id
    assert event["data"]["recipient"]["address"] == BOB
    assert event["data"]["recipient"]["state"] == "suppressed"


def test_every_recipient_suppressed_fails_clearly_and_sends_nothing(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        postroom.suppress(ALICE)
        postroom.suppress(BOB, scope="Default")
        case = postroom.cases.create("A-B-C")
        run_agent(postroom)

    assert srv.sink.received == []
    assert srv.sink.connections == 0  # nothing to send, so no connection either
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == 0  # not an attempt: nothing was tried
    assert {r.state for r in entry.recipients} == {RecipientState.SUPPRESSED}
    error = entry.last_error or ""
    assert error.startswith("not sent: every remaining recipient is suppressed: ")
    assert f"{ALICE} (suppressed since " in error
    assert f"{BOB} (suppressed for account Default since " in error
    failed = [h.detail for h in postroom.cases.get(case.id).history if h.action == "email-failed"]
    assert failed == [f"outbox #{entry.id} 'Your case' failed: {error}"]


def test_an_account_scoped_entry_holds_for_that_account_only(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        postroom.suppress(BOB, scope="Other")
        via_default = postroom.send(to=[BOB], subject="A", body="x", class_name="Default")
        via_other = postroom.send(to=[BOB], subject="B", body="x", class_name="Other")
        run_agent(postroom)

    assert [r.message["Subject"] for r in srv.sink.received] == ["A"]
    assert postroom.outbox_entry(via_default).status is OutboxStatus.SENT
    other = postroom.outbox_entry(via_other)
    assert other.status is OutboxStatus.FAILED
    assert other.recipients[0].state is RecipientState.SUPPRESSED
    assert "for account Other" in other.recipients[0].text


def test_immediate_delivery_skips_suppressed_recipients(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port, immediate=True))
        postroom.suppress(ALICE)
        case = postroom.cases.create("A-B-C")
        [received] = srv.sink.received  # sent before create() returned; no agent ran
    assert received.rcpt_tos == [BOB]
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.SENT
    assert [r.state for r in entry.recipients] == [
        RecipientState.SUPPRESSED,
        RecipientState.ACCEPTED,
    ]


def test_recipients_accepted_earlier_keep_the_email_sent(database_url: str) -> None:
    """A deferred recipient suppressed before its retry: the email stays sent, once."""
    pr = Postroom(make_settings(database_url, backoff_base=600, backoff_max=600))
    try:
        with smtp_server() as srv:
            pr.apply(records(srv.port))
            srv.sink.rcpt_replies[BOB] = "450 4.2.1 try later"
            case = pr.cases.create("A-B-C")
            [entry] = pr.outbox(case_id=case.id)
            run_agent(pr)  # Bob waits ten minutes for his retry
            assert pr.outbox_entry(entry.id).status is OutboxStatus.RETRY
            pr.suppress(BOB, detail="moved away")
            pr.retry(entry.id)  # due now
            run_agent(pr)
        done = pr.outbox_entry(entry.id)
        history = [h.action for h in pr.cases.get(case.id).history]
    finally:
        pr.close()

    assert [r.rcpt_tos for r in srv.sink.received] == [[ALICE]]
    assert done.status is OutboxStatus.SENT
    assert [r.state for r in done.recipients] == [
        RecipientState.ACCEPTED,
        RecipientState.SUPPRESSED,
    ]
    assert "not sent: every remaining recipient is suppressed" in (done.last_error or "")
    assert "email-failed" not in history
    assert history.count("email-sent") == 1


@pytest.mark.parametrize("reason", [SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT])
def test_automatic_entries_are_described_by_their_reason(
    postroom: Postroom, reason: SuppressionReason
) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        with postroom.engine.begin() as conn:
            postroom.suppression_store.suppress(
                conn, BOB, scope=EVERYWHERE, reason=reason, detail="550 5.1.1 no such user"
            )
        oid = postroom.send(to=[BOB], subject="A", body="x", class_name="Default")
        run_agent(postroom)
    assert srv.sink.received == []
    [bob] = postroom.outbox_entry(oid).recipients
    words = reason.value.replace("_", " ")
    assert bob.text.endswith(f": {words} (550 5.1.1 no such user)")


def test_one_batch_marks_only_the_emails_whose_own_recipients_are_suppressed(
    postroom: Postroom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="postroom.agent")
    subscribe(postroom)
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        postroom.suppress(BOB)
        to_alice = postroom.send(to=[ALICE], subject="A", body="x", class_name="Default")
        to_bob = postroom.send(to=[BOB], subject="B", body="x", class_name="Default")
        run_agent(postroom)  # one claim takes both

    assert [r.rcpt_tos for r in srv.sink.received] == [[ALICE]]
    alice = postroom.outbox_entry(to_alice)
    assert alice.status is OutboxStatus.SENT
    assert [r.state for r in alice.recipients] == [RecipientState.ACCEPTED]
    assert postroom.outbox_entry(to_bob).status is OutboxStatus.FAILED
    assert [e["data"]["email_id"] for e in suppressed_events(postroom)] == [to_bob]
    noted = [r.getMessage() for r in caplog.records if "not sent to suppressed" in r.getMessage()]
    why = postroom.outbox_entry(to_bob).recipients[0].text
    assert noted == [f"outbox #{to_bob}: not sent to suppressed {BOB} ({why})"]
