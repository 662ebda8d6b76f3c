"""Delivery reports applied as they are ingested (SQLite and PostgreSQL): matched by VERP
token, ENVID or Message-ID; forged ones change nothing; recipients, history, steps,
suppression and events follow; later mail from the address lifts a bounce suppression."""

from __future__ import annotations

from postroom.bounces.verp import verp_address
from postroom.inbound.models import InboundStatus
from postroom.outbox.models import RecipientState
from postroom.suppression import EVERYWHERE, SuppressionReason
from postroom.webhooks.models import EventType
from tests import bouncesamples as samples
from tests import mailsamples
from tests.bouncekit import (
    BOB,
    BOUNCES,
    FAILED_STATUS,
    JANE,
    deliver,
    events,
    recipients,
    report_rows,
    send_case,
    subscribe,
    suppressed,
    world,
)
from tests.ingestkit import ACCOUNT, ADDRESS, history


def test_a_report_to_the_verp_address_bounces_that_recipient_only(database_url: str) -> None:
    with world(database_url) as pr:
        sent = send_case(pr)
        subscribe(pr, EventType.EMAIL_BOUNCED, EventType.EMAIL_RECEIVED)
        raw = samples.postfix_dsn(
            recipient=JANE, to=verp_address(BOUNCES, sent.token), message_id=None
        )
        result = deliver(pr, raw, key="1")
        assert (result.status, result.case_id) == (InboundStatus.BOUNCE, sent.case_id)

        now = recipients(pr, sent.outbox_id)
        assert now[JANE].state is RecipientState.BOUNCED
        assert (now[JANE].code, now[JANE].enhanced) == (550, "5.1.1")
        assert "User unknown in virtual mailbox table" in now[JANE].text
        assert now[BOB].state is RecipientState.ACCEPTED
        assert pr.outbox_entry(sent.outbox_id).status == "sent"

        received = pr.received_message(result.id)
        assert received.reason.startswith(
            f"delivery report for outbox #{sent.outbox_id} (by its VERP address): {JANE} bounced"
        )
        assert received.case_id == sent.case_id
        [line] = history(pr, sent.case_id, "email-bounced")
        assert f"outbox #{sent.outbox_id} to {JANE}" in line
        assert "5.1.1" in line

        # The on: bounced step: the case manager told, the case's status set.
        case = pr.cases.get(sent.case_id)
        assert case.status == FAILED_STATUS
        notices = [e for e in pr.outbox(case_id=sent.case_id) if "bounced" in e.subject]
        assert [r.address for r in notices[0].recipients] == ["carol@acme.example"]
        assert result.immediate == ()

        entry = suppressed(pr)[JANE]
        assert (entry.reason, entry.scope, entry.outbox_id) == (
            SuppressionReason.HARD_BOUNCE,
            ACCOUNT,
            sent.outbox_id,
        )
        [row] = report_rows(pr)
        assert (row.address, row.kind, row.soft, row.status, row.inbound_id) == (
            JANE,
            "bounced",
            False,
            "5.1.1",
            result.id,
        )
        [event] = events(pr, EventType.EMAIL_BOUNCED)
        assert (event["email_id"], event["report_id"], event["case_id"]) == (
            sent.outbox_id,
            result.id,
            sent.case_id,
        )
        assert event["recipient"]["address"] == JANE
        assert event["recipient"]["enhanced"] == "5.1.1"
        assert events(pr, EventType.EMAIL_RECEIVED) == []  # a report is not a received email

        # The same report again (a second copy from the relay): nothing happens twice.
        again = deliver(pr, raw.replace(b"Message-Id: <", b"Message-Id: <copy-"), key="2")
        assert not again.duplicate
        assert f"{JANE} bounced ignored, it is bounced" in pr.received_message(again.id).reason
        assert len(history(pr, sent.case_id, "email-bounced")) == 1
        assert len(report_rows(pr)) == 1
        assert len(events(pr, EventType.EMAIL_BOUNCED)) == 1
        assert len([e for e in pr.outbox(case_id=sent.case_id) if "bounced" in e.subject]) == 1


def test_matched_by_envid_or_by_the_returned_message_id(database_url: str) -> None:
    with world(database_url) as pr:
        first, second = send_case(pr), send_case(pr)
        by_envid = samples.postfix_dsn(
            recipient=BOB, to=ADDRESS, message_id=None, envid=first.token
        )
        result = deliver(pr, by_envid, key="1")
        assert "(by its ENVID)" in pr.received_message(result.id).reason
        assert recipients(pr, first.outbox_id)[BOB].state is RecipientState.BOUNCED

        by_mid = samples.exchange_ndr(recipient=BOB, to=ADDRESS, message_id=second.message_id)
        result = deliver(pr, by_mid, key="2")
        assert "(by its Message-ID)" in pr.received_message(result.id).reason
        now = recipients(pr, second.outbox_id)
        assert (now[BOB].state, now[BOB].enhanced) == (RecipientState.BOUNCED, "5.1.10")
        assert "RESOLVER.ADR.RecipientNotFound" in now[BOB].text
        assert now[JANE].state is RecipientState.ACCEPTED


def test_forged_reports_change_nothing(database_url: str) -> None:
    with world(database_url) as pr:
        sent = send_case(pr)
        # Names a real recipient, but carries neither the token nor the Message-ID.
        forged = samples.qmail(recipient=JANE, to=ADDRESS, message_id="made-up@attacker.example")
        result = deliver(pr, forged, key="1")
        received = pr.received_message(result.id)
        assert received.status is InboundStatus.BOUNCE
        assert received.reason.startswith("a delivery report naming nothing Postroom sent")
        assert received.case_id is None
        # The real Message-ID, but an address that is not on the email.
        stranger = samples.gmail_dsn(
            recipient="mallory@else.example", to=ADDRESS, message_id=sent.message_id
        )
        result = deliver(pr, stranger, key="2")
        assert "names no recipient of it (mallory@else.example)" in (
            pr.received_message(result.id).reason
        )
        assert {r.state for r in recipients(pr, sent.outbox_id).values()} == {
            RecipientState.ACCEPTED
        }
        assert report_rows(pr) == []
        assert suppressed(pr) == {}
        assert history(pr, sent.case_id, "email-bounced") == []
        assert pr.cases.get(sent.case_id).status != FAILED_STATUS
        assert pr.received(unmatched=True) == []  # never routed as replies


def test_a_report_naming_nobody_counts_only_for_a_one_recipient_email_by_token(
    database_url: str,
) -> None:
    with world(database_url, two=False) as pr:
        single = send_case(pr)
        deliver(pr, samples.nameless(to=verp_address(BOUNCES, single.token)), key="1")
        [only] = recipients(pr, single.outbox_id).values()
        assert (only.state, only.enhanced) == (RecipientState.BOUNCED, "5.1.1")
        assert suppressed(pr)[JANE].reason is SuppressionReason.HARD_BOUNCE


def test_a_report_naming_nobody_changes_nothing_on_a_two_recipient_email(
    database_url: str,
) -> None:
    with world(database_url) as pr:
        sent = send_case(pr)
        result = deliver(pr, samples.nameless(to=verp_address(BOUNCES, sent.token)), key="1")
        assert pr.received_message(result.id).reason.endswith("names no recipient: changes nothing")
        assert {r.state for r in recipients(pr, sent.outbox_id).values()} == {
            RecipientState.ACCEPTED
        }
        assert suppressed(pr) == {}


def test_soft_bounces_suppress_at_the_limit(database_url: str) -> None:
    with world(database_url, settings={"soft_bounce_limit": 3}) as pr:
        for n in range(3):
            sent = send_case(pr)
            full = samples.postfix_dsn(
                recipient=JANE,
                to=verp_address(BOUNCES, sent.token),
                message_id=None,
                status="5.2.2",
                diagnostic="smtp; 552 5.2.2 Mailbox full",
            )
            deliver(pr, full, key=str(n))
            assert recipients(pr, sent.outbox_id)[JANE].state is RecipientState.BOUNCED
            if n < 2:
                assert JANE not in suppressed(pr), n
        entry = suppressed(pr)[JANE]
        assert entry.reason is SuppressionReason.SOFT_BOUNCES
        assert entry.detail.startswith("3 soft bounces within 7 days")
        assert [r.soft for r in report_rows(pr)] == [True, True, True]
        # Not a case of a wrong address: the case was told each time, all the same.
        assert pr.cases.get(sent.case_id).status == FAILED_STATUS


def test_a_complaint_suppresses_everywhere_and_later_mail_does_not_lift_it(
    database_url: str,
) -> None:
    with world(database_url, settings={"suppression_scope": "everywhere"}) as pr:
        sent = send_case(pr)
        subscribe(pr, EventType.EMAIL_COMPLAINED, EventType.EMAIL_RECEIVED)
        complaint = samples.arf(recipient=JANE, to=ADDRESS, message_id=sent.message_id)
        result = deliver(pr, complaint, key="1")
        assert recipients(pr, sent.outbox_id)[JANE].state is RecipientState.COMPLAINED
        entry = suppressed(pr)[JANE]
        assert (entry.reason, entry.scope) == (SuppressionReason.COMPLAINT, EVERYWHERE)
        assert len(history(pr, sent.case_id, "email-complained")) == 1
        assert pr.cases.get(sent.case_id).status != FAILED_STATUS  # complaints fire no step
        [event] = events(pr, EventType.EMAIL_COMPLAINED)
        assert event["report_id"] == result.id

        reply = mailsamples.reply(in_reply_to=sent.message_id)
        answered = deliver(pr, reply, key="2")
        assert answered.status is InboundStatus.MATCHED
        assert suppressed(pr)[JANE].reason is SuppressionReason.COMPLAINT
        [received] = events(pr, EventType.EMAIL_RECEIVED)
        assert (received["received_id"], received["status"], received["from"]) == (
            answered.id,
            "matched",
            JANE,
        )


def test_mail_from_a_bounced_address_lifts_its_suppression(database_url: str) -> None:
    with world(database_url) as pr:
        sent = send_case(pr)
        deliver(pr, samples.qmail(recipient=JANE, to=ADDRESS, message_id=sent.message_id), "1")
        assert suppressed(pr)[JANE].reason is SuppressionReason.HARD_BOUNCE
        deliver(pr, mailsamples.reply(in_reply_to=sent.message_id), key="2")
        assert JANE not in suppressed(pr)
        [line] = history(pr, sent.case_id, "suppression-lifted")
        assert JANE in line


def test_a_delay_then_a_failure(database_url: str) -> None:
    with world(database_url) as pr:
        sent = send_case(pr)
        verp = verp_address(BOUNCES, sent.token)
        deliver(pr, samples.delayed_dsn(recipient=JANE, to=verp, message_id=None), key="1")
        now = recipients(pr, sent.outbox_id)[JANE]
        assert (now.state, now.enhanced) == (RecipientState.DELAYED, "4.4.7")
        assert suppressed(pr) == {}
        assert pr.cases.get(sent.case_id).status != FAILED_STATUS  # a delay fires nothing
        assert len(history(pr, sent.case_id, "email-delayed")) == 1
        deliver(pr, samples.postfix_dsn(recipient=JANE, to=verp, message_id=None), key="2")
        assert recipients(pr, sent.outbox_id)[JANE].state is RecipientState.BOUNCED
        assert pr.cases.get(sent.case_id).status == FAILED_STATUS


def test_an_unknown_step_event_is_refused_at_apply(database_url: str) -> None:
    with world(database_url) as pr:
        bad = {
            "case_types": [
                {
                    "class": "A-B-C",
                    "class_group": "A-B",
                    "id_prefix": "C-",
                    "steps": [{"on": "bounce", "set_status": "X"}],
                }
            ]
        }
        try:
            pr.apply(bad)
        except Exception as exc:
            said = str(exc)
        else:
            raise AssertionError("apply took an unknown event")
        assert "unknown event 'bounce'" in said
        assert "bounced" in said
