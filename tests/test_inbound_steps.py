"""Steps on received mail: answers to the sender, status changes, Auto-Submitted, loop
protection, and the case id carried by subjects and Reply-To."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.config.apply import parse_yaml
from postroom.errors import ConfigurationError
from postroom.inbound.models import InboundStatus, MailboxRef
from postroom.outbox import OutboxStatus
from postroom.outbox.status import Hold
from tests import mailsamples
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.ingestkit import (
    CUSTOMER,
    MORTGAGE,
    history,
    ingest,
    new_case,
    queued,
    records,
)

ACK = {
    "name": "Acknowledge",
    "on": "email_received",
    "to": [{"sender": True}],
    "subject": "We have your message",
    "body": "<p>Thank you, {{ case.id }}.</p>",
    "set_status": "Customer-Replied",
}
NOTIFY = {
    "name": "Notify the case manager",
    "on": {"status": "Customer-Replied"},
    "to": [{"party": "CaseManager"}],
    "subject": "The customer replied",
    "body": "<p>See the case.</p>",
}


def test_a_received_step_answers_the_sender_and_moves_the_status(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK, NOTIFY]))
    case_id, sent_id = new_case(postroom)
    result = ingest(postroom, mailsamples.reply(in_reply_to=sent_id))
    assert result.status is InboundStatus.MATCHED
    case = postroom.cases.get(case_id)
    assert case.status == "Customer-Replied"
    welcome, ack, notify = (m for _, m in queued(postroom, case_id))
    assert welcome["Auto-Submitted"] == "auto-generated"
    assert ack["To"] == f"Jane Customer <{CUSTOMER}>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert ack["Subject"] == "We have your message"
    assert notify["To"] == "Carol <carol@acme.example>"
    assert notify["Auto-Submitted"] == "auto-replied"  # caused by the received mail too
    [moved] = history(postroom, case_id, "status")
    assert moved == "status New → Customer-Replied (step 'Acknowledge')"
    actions = [h.action for h in case.history]
    # The mail is on the case before its steps speak.
    assert actions.index("email-received") < actions.index("status")


def test_ad_hoc_emails_carry_no_auto_submitted(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    postroom.send(to=["someone@example.org"], subject="By hand", body="<p>x</p>", case_id=case_id)
    messages = [m for _, m in queued(postroom, case_id)]
    assert [m["Auto-Submitted"] for m in messages] == ["auto-generated", None]


def test_a_received_step_with_a_sender_but_no_address_is_recorded(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK], accept_from_anyone=True))
    case_id, _ = new_case(postroom)
    raw = mailsamples.plain(subject=f"[{case_id}]", sender="not an address")
    result = ingest(postroom, raw)
    assert result.status is InboundStatus.MATCHED
    [failed] = history(postroom, case_id, "email-failed")
    assert "{sender: true} needs a received email with a sender address" in failed
    assert postroom.cases.get(case_id).status == "Customer-Replied"


def test_loop_protection_holds_the_answer_past_the_hourly_limit(database_url: str) -> None:
    settings = make_settings(database_url, auto_reply_limit=5)
    with Postroom(settings) as pr:
        pr.apply(records(steps=[{k: v for k, v in ACK.items() if k != "set_status"}]))
        case_id, sent_id = new_case(pr)
        results = []
        for n in range(6):
            raw = mailsamples.reply(in_reply_to=sent_id, message_id=f"loop-{n}@customer.example")
            results.append(ingest(pr, raw, key=str(n)))
        answers = [e for e in pr.outbox(case_id=case_id) if e.subject == "We have your message"]
        answers.sort(key=lambda e: e.id)
        assert [e.status for e in answers] == [OutboxStatus.QUEUED] * 5 + [OutboxStatus.HELD]
        held = answers[-1]
        assert held.hold is Hold.LOOP
        [line] = history(pr, case_id, "email-held")
        assert f"held as outbox #{held.id} (loop protection, answering received message " in line
        assert f"message #{results[-1].id}): " in line
        assert f"{CUSTOMER} already had 5 automatic answers in the last hour" in line
        with pr.engine.begin() as conn:
            claimed = pr.outbox_store.claim(conn, owner="t", limit=100, lease=60)
        assert held.id not in [c.id for c in claimed]
        released = pr.retry(held.id)
        assert (released.status, released.hold) == (OutboxStatus.QUEUED, None)


def test_held_answers_are_not_counted_and_other_addresses_are_not_held(
    database_url: str,
) -> None:
    settings = make_settings(database_url, auto_reply_limit=1)
    with Postroom(settings) as pr:
        pr.apply(records(steps=[{k: v for k, v in ACK.items() if k != "set_status"}]))
        case_id, sent_id = new_case(pr)
        for n, sender in enumerate(("a@x.example", "a@x.example", "b@y.example")):
            raw = mailsamples.reply(
                in_reply_to=sent_id, message_id=f"m{n}@x.example", sender=sender
            )
            ingest(pr, raw, key=str(n))
        answers = sorted(
            (e for e in pr.outbox(case_id=case_id) if e.subject == "We have your message"),
            key=lambda e: e.id,
        )
        states = [(e.recipients[0].address, e.status) for e in answers]
        assert states == [
            ("a@x.example", OutboxStatus.QUEUED),
            ("a@x.example", OutboxStatus.HELD),
            ("b@y.example", OutboxStatus.QUEUED),
        ]


def test_subject_tokens_are_added_once(postroom: Postroom) -> None:
    step = {
        "on": {"status": "Offer"},
        "to": [{"party": "Customer"}],
        "subject": "Offer for [{{ case.id }}]",
        "body": "<p>Offer</p>",
    }
    postroom.apply(records(steps=[step], subject_token=True))
    case_id, _ = new_case(postroom)
    postroom.cases.set_status(case_id, "Offer")
    subjects = [m["Subject"] for _, m in queued(postroom, case_id)]
    assert subjects == [f"Your mortgage request [{case_id}]", f"Offer for [{case_id}]"]


def test_a_reply_through_the_relay_comes_back_to_its_case(tmp_path: Path) -> None:
    # The bytes that reach the relay carry the token and the plus-address; a reply to
    # them (as a mail client writes it) finds the case by each of them alone.
    with smtp_server() as srv:
        settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}")
        with Postroom(settings) as pr:
            pr.apply(records(port=srv.port, plus=True, subject_token=True))
            case_id, _ = new_case(pr)
            asyncio.run(pr.agent().run(until_idle=True))
            [sent] = srv.sink.received
            subject, reply_to = sent.message["Subject"], sent.message["Reply-To"]
            assert subject == f"Your mortgage request [{case_id}]"
            assert reply_to == f"mortgages+{case_id}@acme.example"
            by_token = mailsamples.plain(subject=f"Re: {subject}", message_id="t@c.example")
            by_plus = mailsamples.plain(to=reply_to, subject="Re: hi", message_id="p@c.example")
            assert ingest(pr, by_token).case_id == case_id
            assert ingest(pr, by_plus, key="2").case_id == case_id


def test_status_steps_that_set_statuses_in_a_cycle_stop(postroom: Postroom) -> None:
    ping = {"on": {"status": "A"}, "set_status": "B"}
    pong = {"on": {"status": "B"}, "set_status": "A"}
    postroom.apply(records(steps=[ping, pong]))
    case_id, _ = new_case(postroom)
    case = postroom.cases.set_status(case_id, "A")
    assert case.status in ("A", "B")
    [stopped] = history(postroom, case_id, "step-stopped")
    assert "status changes in a row" in stopped


def test_received_eml_names_are_kept_for_received_mail(postroom: Postroom) -> None:
    postroom.apply(records())
    case = postroom.cases.create(MORTGAGE, data={"customer_email": CUSTOMER})
    with pytest.raises(ConfigurationError, match="kept for the emails Postroom receives"):
        postroom.cases.attach(case.id, name="Received-3.eml", content=b"From: x\r\n\r\n")


# Copied from docs/inbound.md, "Case types that take mail".
DOCS_CLAIMS = """
operators:
  - {id: carol, name: Carol Case-Manager, email: carol.manager@example.com}
case_types:
  - class: MyOrg-Claims-Work-Claim
    class_group: MyOrg-Claims-Work
    label: Claim
    id_prefix: C-
    subject_token: true                   # outgoing subjects end with [C-12]
    parties:
      CaseManager: operator:carol
    fields:
      - {name: summary, type: text}
      - {name: description, type: text}
    inbound:
      create_case: true                   # new mail to this address opens a claim
      address: claims@example.com
      sender_party: Customer              # the sender becomes the Customer work party
      data: {subject: summary, text: description}
    steps:
      - name: Acknowledge
        on: email_received
        to: [{sender: true}]
        subject: "We received your message about {{ case.id }}"
        body: "<p>Thank you. Your claim is {{ case.id }}.</p>"
      - name: Tell the case manager
        on: email_received
        to: [{party: CaseManager}]
        subject: "New mail on {{ case.id }}"
        body: "<p>{{ case.id }} received an email.</p>"
        set_status: Pending-Review
"""


def test_a_case_opened_from_mail_runs_its_received_steps(postroom: Postroom) -> None:
    declared = parse_yaml(DOCS_CLAIMS)  # as `postroom apply` reads it
    declared["accounts"] = [
        {
            "name": "Default",
            "address": "claims@example.com",
            "host": "127.0.0.1",
            "port": 25,
            "security": "none",
        }
    ]
    postroom.apply(declared)
    claims = MailboxRef("Default", "INBOX")
    raw = mailsamples.plain(subject="Water damage", to="claims@example.com")
    result = ingest(postroom, raw, mailbox=claims)
    assert result.status is InboundStatus.NEW_CASE
    assert result.case_id is not None
    case = postroom.cases.get(result.case_id)
    assert case.status == "Pending-Review"
    assert case.data["summary"] == "Water damage"
    ack, notice = (m for _, m in queued(postroom, case.id))
    assert ack["To"] == f"Jane Customer <{CUSTOMER}>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Subject"] == f"We received your message about {case.id} [{case.id}]"
    assert notice["To"] == "Carol Case-Manager <carol.manager@example.com>"
    assert notice["Subject"] == f"New mail on {case.id} [{case.id}]"
    assert len(history(postroom, case.id, "email-received")) == 1
