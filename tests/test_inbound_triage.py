"""Triage: unmatched mail attached to a case, opened as a case, or dismissed; the
conversation of a case in time order."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from sqlalchemy import event

from postroom import Postroom
from postroom.errors import ConfigurationError, NotFoundError, StateError
from postroom.inbound.models import FetchedMessage, InboundStatus
from tests import mailsamples
from tests.ingestkit import CLAIM, CUSTOMER, MAILBOX, history, ingest, new_case, queued, records

# A statement that loads an email's bytes: the outbox's message or a received message's raw.
BYTES = re.compile(r"\b(outbox\.message|inbound_messages\.raw)\b(?!_)")
ACK = {
    "on": "email_received",
    "to": [{"sender": True}],
    "subject": "Thanks",
    "body": "<p>Thanks</p>",
}


def test_an_admin_attaches_unmatched_mail_to_a_case(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, _ = new_case(postroom)
    result = ingest(postroom, mailsamples.with_attachments())
    assert result.status is InboundStatus.UNMATCHED
    attached = postroom.attach_received(result.id, case_id, actor="carol")
    assert (attached.status, attached.case_id, attached.reason) == (
        InboundStatus.MATCHED,
        case_id,
        "attached by carol",
    )
    names = [a.name for a in postroom.cases.get(case_id).attachments]
    assert f"received-{result.id}.eml" in names
    assert "Kontoauszüge 2025.pdf" in names
    [line] = history(postroom, case_id, "email-received")
    assert "attached by carol" in line
    assert [
        h.actor for h in postroom.cases.get(case_id).history if h.action == "email-received"
    ] == ["carol"]
    [_, (_, ack)] = queued(postroom, case_id)
    assert (ack["To"], ack["Auto-Submitted"]) == (f"Jane Customer <{CUSTOMER}>", "auto-replied")
    already = f"received message #{result.id} is already on case {case_id}"
    with pytest.raises(StateError, match=already):
        postroom.attach_received(result.id, case_id)
    with pytest.raises(StateError, match=already):
        postroom.dismiss_received(result.id)
    assert postroom.received(unmatched=True) == []
    assert [m.id for m in postroom.received(case_id=case_id)] == [result.id]


def test_attaching_to_a_missing_case_changes_nothing(postroom: Postroom) -> None:
    postroom.apply(records())
    result = ingest(postroom, mailsamples.plain())
    with pytest.raises(NotFoundError):
        postroom.attach_received(result.id, "M-404")
    assert postroom.received_message(result.id).status is InboundStatus.UNMATCHED
    with pytest.raises(NotFoundError, match="no received message #999"):
        postroom.attach_received(999, "M-1")


def test_an_admin_opens_a_case_from_unmatched_mail(postroom: Postroom) -> None:
    postroom.apply(records())
    result = ingest(postroom, mailsamples.plain(subject="My roof leaks"))
    case = postroom.case_from_received(result.id, CLAIM, actor="carol")
    assert case.case_type == CLAIM
    assert case.data == {
        "title": "My roof leaks",
        "description": "Hello,\n\nplease find my answer below.\n\nJane",
        "claimant_name": "Jane Customer",
    }
    assert {(p.role, p.address) for p in case.parties} == {
        ("Claimant", CUSTOMER),
        ("Handler", "carol@acme.example"),
    }
    message = postroom.received_message(result.id)
    assert (message.status, message.case_id) == (InboundStatus.NEW_CASE, case.id)
    assert message.reason == f"case {case.id} opened by carol"
    assert f"received-{result.id}.eml" in [a.name for a in case.attachments]
    with pytest.raises(StateError, match=f"#{result.id} is already on case {case.id}"):
        postroom.attach_received(result.id, case.id)


def test_a_case_type_that_refuses_the_data_opens_nothing(postroom: Postroom) -> None:
    fields = [{"name": "title", "type": "number"}]
    postroom.apply(records(claim_fields=fields))
    result = ingest(postroom, mailsamples.plain())
    with pytest.raises(ConfigurationError, match=r"cannot open a .* case: "):
        postroom.case_from_received(result.id, CLAIM)
    assert postroom.cases.recent() == []
    assert postroom.received_message(result.id).status is InboundStatus.UNMATCHED
    with pytest.raises(NotFoundError):
        postroom.case_from_received(result.id, "No-Such-Type")


def test_dismissed_mail_leaves_triage_and_can_come_back(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    result = ingest(postroom, mailsamples.plain())
    dismissed = postroom.dismiss_received(result.id, actor="carol")
    assert (dismissed.status, dismissed.reason) == (InboundStatus.DISMISSED, "dismissed by carol")
    assert postroom.received(unmatched=True) == []
    assert [m.id for m in postroom.received(status=InboundStatus.DISMISSED)] == [result.id]
    with pytest.raises(StateError, match=f"^received message #{result.id} is already dismissed$"):
        postroom.dismiss_received(result.id)
    assert postroom.attach_received(result.id, case_id).status is InboundStatus.MATCHED


def test_bounces_and_large_mail_cannot_be_attached(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    bounce = ingest(postroom, mailsamples.dsn_bounce())
    with pytest.raises(StateError, match=f"#{bounce.id} is a delivery report: it stays as it is"):
        postroom.attach_received(bounce.id, case_id)
    large = postroom.ingestor.ingest(
        MAILBOX, FetchedMessage(key="9", size=10**8, raw=None), validity="7"
    )
    with pytest.raises(StateError, match="was too large to read: it stays on the server"):
        postroom.attach_received(large.id, case_id)


def test_automatic_mail_attached_by_hand_fires_no_steps(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, _ = new_case(postroom)
    auto = ingest(postroom, mailsamples.auto_reply())
    with pytest.raises(StateError, match=r"is automatic mail .*: it cannot open a case"):
        postroom.case_from_received(auto.id, CLAIM)
    postroom.attach_received(auto.id, case_id)
    assert len(postroom.outbox(case_id=case_id)) == 1  # the welcome email only
    assert len(history(postroom, case_id, "email-received")) == 1


def test_the_conversation_shows_sent_and_received_mail_in_order(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    reply = ingest(postroom, mailsamples.reply(in_reply_to=sent_id))
    items = postroom.conversation(case_id)
    assert [(i.kind, i.subject) for i in items] == [
        ("sent", "Your mortgage request"),
        ("received", "Re: Your mortgage request [M-12]"),
        ("sent", "Thanks"),
    ]
    sent, received, ack = items
    assert sent.to == [CUSTOMER]
    assert sent.status == "queued"
    assert "we have your request" in sent.text
    assert received.id == reply.id
    assert received.from_address == CUSTOMER
    assert received.text.startswith("Yes, the valuation date works for me.")
    assert "could you confirm the valuation date?" in received.full_text
    assert received.html is not None
    # Sanitised (classes dropped), with its quoted history kept for the reader to unfold.
    assert "could you confirm the valuation date?" in received.html
    assert ack.to == [CUSTOMER]
    with pytest.raises(NotFoundError):
        postroom.conversation("M-404")


def test_a_conversation_read_again_loads_no_email_again(postroom: Postroom) -> None:
    """The Studio refreshes a case's conversation every few seconds: bodies already shown
    are neither loaded nor parsed again, and what is shown stays the same."""
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    ingest(postroom, mailsamples.reply(in_reply_to=sent_id))
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(postroom.engine, "before_cursor_execute", note)
    try:
        first = postroom.conversation(case_id)
        loads = [s for s in statements if BYTES.search(s)]
        statements.clear()
        again = postroom.conversation(case_id)
        reloads = [s for s in statements if BYTES.search(s)]
    finally:
        event.remove(postroom.engine, "before_cursor_execute", note)
    assert len(loads) == 2  # the sent emails' bytes, then the received one's
    assert reloads == []
    assert again == first


def test_file_names_from_mail_are_made_safe_and_unique(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    postroom.cases.attach(case_id, name="a.txt", content=b"already here")
    msg = EmailMessage()
    msg["From"] = "Jane Customer <jane@customer.example>"
    msg["To"] = "mortgages@acme.example"
    msg["Subject"] = "Files"
    msg["Message-ID"] = "<files-1@customer.example>"
    msg.set_content("See attached.")
    for name in ("a.txt", "a.txt", "email-3.eml", "received-1.eml", "../x/y.pdf"):
        msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename=name)
    result = ingest(postroom, msg.as_bytes())
    postroom.attach_received(result.id, case_id)
    names = [a.name for a in postroom.cases.get(case_id).attachments]
    assert names == [
        "a.txt",
        f"received-{result.id}.eml",
        "a-2.txt",
        "a-3.txt",
        "attached-email-3.eml",
        "attached-received-1.eml",
        "y.pdf",  # the path is dropped
    ]
