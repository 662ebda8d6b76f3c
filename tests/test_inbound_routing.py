"""Routing of received mail: each rule, in order, with its reason; strangers to triage."""

from __future__ import annotations

from postroom import Postroom
from postroom.inbound.models import InboundStatus
from tests import mailsamples
from tests.ingestkit import (
    ADDRESS,
    CLAIM,
    CUSTOMER,
    SENDER,
    history,
    ingest,
    new_case,
    queued,
    records,
)


def test_a_reply_to_a_sent_email_is_threaded_by_in_reply_to(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, sent_id = new_case(postroom)
    [(outbox_id, _)] = queued(postroom, case_id)
    result = ingest(postroom, mailsamples.reply(in_reply_to=sent_id, subject="Re: Your request"))
    assert (result.status, result.case_id, result.duplicate) == (
        InboundStatus.MATCHED,
        case_id,
        False,
    )
    message = postroom.received_message(result.id)
    assert message.reason == f"In-Reply-To <{sent_id}> names outbox #{outbox_id} of case {case_id}"
    assert message.text.startswith("Yes, the valuation date works for me.")
    case = postroom.cases.get(case_id)
    assert f"received-{result.id}.eml" in [a.name for a in case.attachments]
    eml = postroom.cases.attachment(case_id, f"received-{result.id}.eml")
    assert eml == ("message/rfc822", postroom.received_raw(result.id))
    [line] = history(postroom, case_id, "email-received")
    assert line.startswith(f"email from Jane Customer <{CUSTOMER}>: 'Re: Your request'; ")
    assert f"names outbox #{outbox_id}" in line


def test_references_alone_find_the_case(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, sent_id = new_case(postroom)
    raw = mailsamples.plain(
        "Answer without In-Reply-To\n",
        subject="Re: something",
        extra={"References": f"<older@elsewhere.example> <{sent_id}>"},
    )
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.MATCHED, case_id)
    assert postroom.received_message(result.id).reason.startswith(f"References <{sent_id}>")


def test_a_reply_to_received_mail_joins_its_case(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, sent_id = new_case(postroom)
    first = ingest(
        postroom, mailsamples.reply(in_reply_to=sent_id, message_id="a1@customer.example")
    )
    # A colleague of the customer answers the customer's own mail.
    raw = mailsamples.plain(
        "I agree with Jane.\n",
        message_id="b1@other.example",
        sender="Bob <bob@other.example>",
        in_reply_to="a1@customer.example",
    )
    second = ingest(postroom, raw, key="2")
    assert (second.status, second.case_id) == (InboundStatus.MATCHED, case_id)
    assert postroom.received_message(second.id).reason == (
        f"In-Reply-To <a1@customer.example> names received message #{first.id} of case {case_id}"
    )


def test_a_subject_token_from_a_party_finds_the_case(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    raw = mailsamples.plain(subject=f"Re: Your mortgage request [{case_id.lower()}]")
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.MATCHED, case_id)
    reason = postroom.received_message(result.id).reason
    assert reason == f"subject token [{case_id}] from a party of {case_id}"


def test_a_strangers_subject_token_goes_to_triage(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    raw = mailsamples.plain(
        subject=f"Re: [{case_id}] let me in", sender="Mallory <mallory@evil.example>"
    )
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.UNMATCHED, None)
    assert postroom.received_message(result.id).reason == (
        f"subject token [{case_id}] from mallory@evil.example, who is not a party of {case_id}"
    )
    assert history(postroom, case_id, "email-received") == []
    assert [m.id for m in postroom.received(unmatched=True)] == [result.id]


def test_a_case_type_may_accept_mail_from_anyone(postroom: Postroom) -> None:
    postroom.apply(records(accept_from_anyone=True))
    case_id, _ = new_case(postroom)
    raw = mailsamples.plain(subject=f"About [{case_id}]", sender="Notary <notary@law.example>")
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.MATCHED, case_id)
    assert "accepts mail from anyone" in postroom.received_message(result.id).reason


def test_subject_text_alone_or_an_unknown_token_finds_nothing(postroom: Postroom) -> None:
    postroom.apply(records())
    case_id, _ = new_case(postroom)
    for key, subject in (("1", f"Re: Case {case_id} Mortgage"), ("2", "Re: [M-999] missing")):
        raw = mailsamples.plain(subject=subject, message_id=f"s{key}@customer.example")
        result = ingest(postroom, raw, key=key)
        assert (result.status, result.case_id) == (InboundStatus.UNMATCHED, None)
        assert postroom.received_message(result.id).reason.startswith("no case found: ")


def test_a_plus_address_finds_the_case(postroom: Postroom) -> None:
    postroom.apply(records(plus=True))
    case_id, _ = new_case(postroom)
    [(_, sent)] = queued(postroom, case_id)
    assert sent["Reply-To"] == f"mortgages+{case_id}@acme.example"
    # Mail systems lower-case the address on the way.
    raw = mailsamples.plain(to=f"mortgages+{case_id.lower()}@acme.example", subject="Hello")
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.MATCHED, case_id)
    reason = postroom.received_message(result.id).reason
    assert reason == (
        f"plus-address mortgages+{case_id.lower()}@acme.example from a party of {case_id}"
    )
    stranger = mailsamples.plain(
        to=f"mortgages+{case_id}@acme.example",
        sender="x@evil.example",
        message_id="evil@evil.example",
    )
    refused = ingest(postroom, stranger, key="2")
    assert refused.status is InboundStatus.UNMATCHED
    assert "who is not a party of" in postroom.received_message(refused.id).reason


def test_plus_addresses_count_only_when_the_account_uses_them(postroom: Postroom) -> None:
    postroom.apply(records(plus=False))
    case_id, _ = new_case(postroom)
    [(_, sent)] = queued(postroom, case_id)
    assert sent["Reply-To"] is None
    raw = mailsamples.plain(to=f"mortgages+{case_id}@acme.example")
    assert ingest(postroom, raw).status is InboundStatus.UNMATCHED


def test_mail_to_a_case_types_address_opens_a_case(postroom: Postroom) -> None:
    postroom.apply(
        records(
            claim_steps=[
                {
                    "on": "created",
                    "to": [{"party": "Claimant"}],
                    "subject": "We have your claim",
                    "body": "<p>Thank you.</p>",
                }
            ]
        )
    )
    raw = mailsamples.with_attachments().replace(
        b"To: Acme Mortgages <mortgages@acme.example>", b"To: claims@acme.example"
    )
    result = ingest(postroom, raw)
    assert result.status is InboundStatus.NEW_CASE
    assert result.case_id is not None
    assert result.case_id.startswith("CL-")
    message = postroom.received_message(result.id)
    assert message.reason == (
        f"new case: mail to claims@acme.example (case type {CLAIM}): case {result.case_id}"
    )
    case = postroom.cases.get(result.case_id)
    assert case.case_type == CLAIM
    [claimant] = [p for p in case.parties if p.role == "Claimant"]
    assert (claimant.address, claimant.name) == (CUSTOMER, "Jane Customer")
    assert case.data["title"] == "Documents"
    assert case.data["claimant_name"] == "Jane Customer"
    names = [a.name for a in case.attachments]
    assert names[0] == f"received-{result.id}.eml"
    assert "Kontoauszüge 2025.pdf" in names
    assert all("/" not in n for n in names)
    assert any("created" in h.action for h in case.history)
    [(_, ack)] = queued(postroom, result.case_id)
    assert ack["To"] == SENDER
    assert ack["Auto-Submitted"] == "auto-replied"


def test_data_the_case_type_refuses_sends_the_mail_to_triage(postroom: Postroom) -> None:
    fields = [
        {"name": "title", "type": "number"},
        {"name": "description", "type": "text"},
        {"name": "claimant_name", "type": "text"},
    ]
    postroom.apply(records(claim_fields=fields))
    raw = mailsamples.plain(to="claims@acme.example", subject="A long subject line")
    result = ingest(postroom, raw)
    assert (result.status, result.case_id) == (InboundStatus.UNMATCHED, None)
    reason = postroom.received_message(result.id).reason
    assert reason.startswith("new case: mail to claims@acme.example")
    assert "but the case was not opened: " in reason
    assert "title" in reason
    assert postroom.cases.recent() == []


def test_automatic_mail_and_bounces_go_nowhere(postroom: Postroom) -> None:
    postroom.apply(records(steps=[_ACK]))
    case_id, sent_id = new_case(postroom)
    before = len(postroom.outbox())
    auto = mailsamples.auto_reply()
    bounce = mailsamples.dsn_bounce(original_id=sent_id)
    auto_result = ingest(postroom, auto)
    bounce_result = ingest(postroom, bounce, key="2")
    assert (auto_result.status, auto_result.case_id) == (InboundStatus.AUTOMATIC, None)
    assert (bounce_result.status, bounce_result.case_id) == (InboundStatus.BOUNCE, None)
    assert "Auto-Submitted" in postroom.received_message(auto_result.id).reason
    assert len(postroom.outbox()) == before
    assert history(postroom, case_id, "email-received") == []
    assert len(postroom.cases.recent()) == 1


def test_postroom_s_own_email_come_back_is_not_a_reply(postroom: Postroom) -> None:
    postroom.apply(records(steps=[_ACK], accept_from_anyone=True))
    case_id, _ = new_case(postroom)
    [(outbox_id, sent)] = queued(postroom, case_id)
    # A copy of the welcome email lands in the mailbox Postroom reads (the customer's
    # address forwards to it, say); without Auto-Submitted, as Graph would have sent it.
    del sent["Auto-Submitted"]
    result = ingest(postroom, sent.as_bytes())
    assert (result.status, result.case_id) == (InboundStatus.AUTOMATIC, None)
    reason = postroom.received_message(result.id).reason
    assert reason.startswith(f"Postroom's own email (outbox #{outbox_id}) came back")
    assert len(postroom.outbox()) == 1


def test_unmatched_mail_says_why(postroom: Postroom) -> None:
    postroom.apply(records())
    result = ingest(postroom, mailsamples.plain(to=ADDRESS))
    assert result.status is InboundStatus.UNMATCHED
    assert postroom.received_message(result.id).reason == (
        "no case found: no In-Reply-To or References, no case id in the subject, "
        "not sent to an address that opens cases"
    )


_ACK = {
    "name": "Acknowledge",
    "on": "email_received",
    "to": [{"sender": True}],
    "subject": "We have your message",
    "body": "<p>Thank you.</p>",
}
