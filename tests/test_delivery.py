"""Delivery against real SMTP servers: security, SMTP replies, retries and the outbox."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from postroom import Postroom
from postroom.agent import AgentStats
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, MessageError, StateError
from postroom.outbox import OutboxStatus
from postroom.outbox.models import RecipientState
from tests.conftest import make_settings
from tests.fakes import SmtpSink, smtp_server

SENDER = "sender@example.com"
ALICE = "alice@example.net"
BOB = "bob@example.net"


def account(port: int, **fields: Any) -> dict[str, Any]:
    """A Default account on the test server; plain SMTP unless ``fields`` say otherwise."""
    return {
        "name": "Default",
        "address": SENDER,
        "display_name": "Sender",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        **fields,
    }


def queue(pr: Postroom, *to: str, subject: str = "Hello") -> int:
    return pr.send(to=list(to), subject=subject, body="Body text.", class_name="Default")


def run_agent(pr: Postroom) -> AgentStats:
    return asyncio.run(pr.agent().run(until_idle=True))


def wait_until_due(pr: Postroom, outbox_id: int, *, limit: float = 5.0) -> None:
    """Sleep until the row's next attempt is due (bounded by ``limit`` seconds)."""
    delay = (pr.outbox_entry(outbox_id).next_attempt_at - utcnow()).total_seconds()
    assert delay <= limit, f"next attempt is {delay:.1f}s away"
    if delay > 0:
        time.sleep(delay + 0.05)


@pytest.fixture
def patient(database_url: str) -> Iterator[Postroom]:
    """Postroom on the same database, waiting 0.75-1.5 s before a retry.

    With no backoff an agent retries at once, so a ``retry`` row is never seen; the wait
    must outlast the agent's next claim even on a loaded machine, or that claim retries.
    """
    pr = Postroom(make_settings(database_url, backoff_base=1.5, backoff_max=1.5))
    try:
        yield pr
    finally:
        pr.close()


def states(pr: Postroom, outbox_id: int) -> dict[str, RecipientState]:
    return {r.address: r.state for r in pr.outbox_entry(outbox_id).recipients}


# --- security ---------------------------------------------------------------------------


def test_starttls_with_auth_delivers(
    postroom: Postroom, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(starttls=server_tls, credentials=(SENDER, "s3cret")) as srv:
        postroom.apply(
            {
                "accounts": [
                    account(srv.port, security="starttls", password="s3cret", truststore=ca_pem)
                ]
            }
        )
        oid = queue(postroom, ALICE, subject="Over STARTTLS")
        stats = run_agent(postroom)

    assert stats.sent == 1
    [received] = srv.sink.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [ALICE]
    assert received.message["Subject"] == "Over STARTTLS"
    assert received.message["To"] == ALICE
    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert received.message["Message-ID"] == entry.message_id
    assert entry.attempts == 1
    assert entry.sent_at is not None


def test_wrong_password_is_not_sent(
    patient: Postroom, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(starttls=server_tls, credentials=(SENDER, "s3cret")) as srv:
        patient.apply(
            {
                "accounts": [
                    account(srv.port, security="starttls", password="wrong", truststore=ca_pem)
                ]
            }
        )
        oid = queue(patient, ALICE)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    # An account problem: the message waits for the account to be fixed.
    assert entry.status is OutboxStatus.RETRY
    assert entry.last_code == 535
    assert "AUTH" in (entry.last_error or "")
    assert srv.sink.received == []
    assert srv.sink.data_commands == 0


def test_implicit_tls_delivers(postroom: Postroom, server_tls: ssl.SSLContext, ca_pem: str) -> None:
    with smtp_server(implicit_tls=server_tls) as srv:
        postroom.apply({"accounts": [account(srv.port, security="tls", truststore=ca_pem)]})
        oid = queue(postroom, ALICE, subject="Over TLS")
        run_agent(postroom)

    [received] = srv.sink.received
    assert received.rcpt_tos == [ALICE]
    assert received.message["Subject"] == "Over TLS"
    assert postroom.outbox_entry(oid).status is OutboxStatus.SENT


def test_untrusted_certificate_is_refused_until_truststore_given(
    patient: Postroom, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(starttls=server_tls) as srv:
        patient.apply({"accounts": [account(srv.port, security="starttls")]})
        oid = queue(patient, ALICE)
        run_agent(patient)

        entry = patient.outbox_entry(oid)
        assert entry.status is OutboxStatus.RETRY
        assert entry.sent_at is None
        error = entry.last_error or ""
        assert "not trusted" in error
        assert "truststore" in error
        assert srv.sink.received == []
        assert srv.sink.data_commands == 0

        patient.apply({"accounts": [account(srv.port, security="starttls", truststore=ca_pem)]})
        wait_until_due(patient, oid)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    [received] = srv.sink.received
    assert received.rcpt_tos == [ALICE]


def test_missing_starttls_is_never_downgraded(patient: Postroom, ca_pem: str) -> None:
    with smtp_server() as srv:  # plain SMTP, no STARTTLS offered
        patient.apply({"accounts": [account(srv.port, security="starttls", truststore=ca_pem)]})
        oid = queue(patient, ALICE)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.RETRY
    error = entry.last_error or ""
    assert "does not offer STARTTLS" in error
    assert "unencrypted" in error
    assert srv.sink.received == []
    assert srv.sink.data_commands == 0
    assert states(patient, oid) == {ALICE: RecipientState.DEFERRED}


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_password_over_plain_smtp_needs_explicit_permission(postroom: Postroom) -> None:
    with smtp_server(credentials=(SENDER, "s3cret"), auth_require_tls=False) as srv:
        with pytest.raises(ConfigurationError, match="without encryption"):
            postroom.apply({"accounts": [account(srv.port, password="s3cret")]})
        assert postroom.accounts() == []

        postroom.apply(
            {"accounts": [account(srv.port, password="s3cret", allow_insecure_auth=True)]}
        )
        oid = queue(postroom, ALICE)
        run_agent(postroom)

    assert postroom.outbox_entry(oid).status is OutboxStatus.SENT
    assert len(srv.sink.received) == 1


# --- transient replies -----------------------------------------------------------------


def test_rcpt_4xx_defers_then_delivers(patient: Postroom) -> None:
    sink = SmtpSink(rcpt_replies={ALICE: "450 4.2.1 try later"})
    with smtp_server(sink) as srv:
        patient.apply({"accounts": [account(srv.port)]})
        oid = queue(patient, ALICE)
        run_agent(patient)

        entry = patient.outbox_entry(oid)
        assert entry.status is OutboxStatus.RETRY
        assert entry.attempts == 1
        assert entry.last_code == 450
        [recipient] = entry.recipients
        assert recipient.state is RecipientState.DEFERRED
        assert recipient.code == 450
        assert sink.data_commands == 0

        sink.rcpt_replies.clear()
        wait_until_due(patient, oid)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert states(patient, oid) == {ALICE: RecipientState.ACCEPTED}
    [received] = sink.received
    assert received.rcpt_tos == [ALICE]


def test_partial_4xx_sends_only_to_the_deferred_recipient_again(patient: Postroom) -> None:
    sink = SmtpSink(rcpt_replies={BOB: "450 4.2.1 try later"})
    with smtp_server(sink) as srv:
        patient.apply({"accounts": [account(srv.port)]})
        oid = queue(patient, ALICE, BOB)
        run_agent(patient)

        entry = patient.outbox_entry(oid)
        assert entry.status is OutboxStatus.RETRY
        assert entry.sent_at is not None  # delivered to someone already
        assert states(patient, oid) == {
            ALICE: RecipientState.ACCEPTED,
            BOB: RecipientState.DEFERRED,
        }
        assert [r.rcpt_tos for r in sink.received] == [[ALICE]]

        sink.rcpt_replies.clear()
        wait_until_due(patient, oid)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert states(patient, oid) == {
        ALICE: RecipientState.ACCEPTED,
        BOB: RecipientState.ACCEPTED,
    }
    assert [r.rcpt_tos for r in sink.received] == [[ALICE], [BOB]]
    first, second = sink.received
    assert first.message["Message-ID"] == second.message["Message-ID"] == entry.message_id


def test_data_4xx_is_retried_then_delivered(postroom: Postroom) -> None:
    sink = SmtpSink()
    sink.data_replies.append("451 4.3.0 try later")
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        stats = run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert sink.data_commands == 2
    assert len(sink.received) == 1
    assert (stats.retried, stats.sent) == (1, 1)


def test_disconnect_during_data_is_retried_and_delivered_once(postroom: Postroom) -> None:
    sink = SmtpSink(disconnect_on_data=1)
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert sink.data_commands == 2
    [received] = sink.received
    assert received.message["Message-ID"] == entry.message_id


def test_gives_up_after_max_attempts(database_url: str) -> None:
    sink = SmtpSink()
    sink.data_replies.extend(["451 4.3.0 try later"] * 20)
    with Postroom(make_settings(database_url, max_attempts=3)) as pr, smtp_server(sink) as srv:
        pr.apply({"accounts": [account(srv.port)]})
        oid = queue(pr, ALICE)
        stats = run_agent(pr)
        entry = pr.outbox_entry(oid)

    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == 3
    assert "gave up" in (entry.last_error or "")
    assert sink.data_commands == 3
    assert sink.received == []
    assert stats.failed == 1
    [recipient] = entry.recipients
    assert recipient.state is RecipientState.REFUSED


# --- permanent replies -----------------------------------------------------------------


def test_rcpt_5xx_fails_without_a_second_attempt(postroom: Postroom) -> None:
    sink = SmtpSink(rcpt_replies={ALICE: "550 5.1.1 no such user"})
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        stats = run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == 1
    assert entry.last_code == 550
    assert entry.last_enhanced == "5.1.1"
    assert "does not exist" in (entry.last_error or "")
    assert sink.data_commands == 0
    assert sink.received == []
    assert stats.failed == 1


def test_rcpt_5xx_for_one_recipient_still_sends_to_the_other(postroom: Postroom) -> None:
    sink = SmtpSink(rcpt_replies={BOB: "550 5.1.1 no such user"})
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE, BOB)
        run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 1
    by_address = {r.address: r for r in entry.recipients}
    assert by_address[ALICE].state is RecipientState.ACCEPTED
    assert by_address[BOB].state is RecipientState.REFUSED
    assert by_address[BOB].code == 550
    assert [r.rcpt_tos for r in sink.received] == [[ALICE]]
    assert sink.data_commands == 1


def test_data_5xx_fails(postroom: Postroom) -> None:
    sink = SmtpSink()
    sink.data_replies.append("554 5.6.0 rejected")
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == 1
    assert entry.last_code == 554
    assert sink.data_commands == 1
    assert sink.received == []
    assert states(postroom, oid) == {ALICE: RecipientState.REFUSED}


def test_a_nul_in_the_servers_words_is_stored_as_a_replacement(postroom: Postroom) -> None:
    """PostgreSQL cannot store NUL in text: a reply with one must not stall the agent."""
    sink = SmtpSink(rcpt_replies={BOB: "550 5.1.1 no such\x00user"})
    sink.data_replies.append("554 5.6.0 rejected\x00here")
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        refused = queue(postroom, BOB, ALICE)
        stats = asyncio.run(asyncio.wait_for(postroom.agent().run(until_idle=True), 60))
    assert stats.failed == 1  # recorded (a write that failed would keep it claimed)
    entry = postroom.outbox_entry(refused)
    assert entry.status is OutboxStatus.FAILED
    assert entry.last_error is not None
    assert "\x00" not in entry.last_error
    assert "rejected\ufffdhere" in entry.last_error
    by_address = {r.address: r for r in entry.recipients}
    assert by_address[BOB].text.startswith("no such\ufffduser")
    assert by_address[ALICE].state is RecipientState.REFUSED


def test_exchange_quota_554_5_2_0_is_retried(patient: Postroom) -> None:
    sink = SmtpSink()
    sink.data_replies.append("554 5.2.0 STOREDRV.Submission.Exception: quota exceeded")
    with smtp_server(sink) as srv:
        patient.apply({"accounts": [account(srv.port)]})
        oid = queue(patient, ALICE)
        run_agent(patient)

        entry = patient.outbox_entry(oid)
        assert entry.status is OutboxStatus.RETRY
        assert (entry.last_code, entry.last_enhanced) == (554, "5.2.0")
        assert states(patient, oid) == {ALICE: RecipientState.DEFERRED}

        wait_until_due(patient, oid)
        run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert len(sink.received) == 1


# --- connections -----------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [200, 5])
def test_connections_are_reused(database_url: str, batch_size: int) -> None:
    """One batch of 20, or four batches of 5: either way the account's pool is reused."""
    with (
        Postroom(make_settings(database_url, batch_size=batch_size)) as pr,
        smtp_server() as srv,
    ):
        limit = pr.settings.connections_per_account
        assert limit == 4
        pr.apply({"accounts": [account(srv.port)]})
        ids = [queue(pr, f"user{i}@example.net", subject=f"n{i}") for i in range(20)]
        stats = run_agent(pr)
        assert all(pr.outbox_entry(i).status is OutboxStatus.SENT for i in ids)

    assert stats.sent == 20
    assert stats.batches == -(-20 // batch_size)
    assert len(srv.sink.received) == 20
    assert 1 <= srv.sink.connections <= limit


# --- cases -----------------------------------------------------------------------------

CLAIMS = {"class": "Acme-Claims", "class_group": "Acme", "label": "Claim", "id_prefix": "C-"}


@pytest.mark.parametrize("failure", ["data-451", "one-recipient-450"])
def test_case_gets_the_eml_once_after_a_transient_failure(patient: Postroom, failure: str) -> None:
    sink = SmtpSink()
    if failure == "data-451":
        sink.data_replies.append("451 4.3.0 try later")
    else:
        sink.rcpt_replies[BOB] = "450 4.2.1 try later"
    with smtp_server(sink) as srv:
        patient.apply({"accounts": [account(srv.port)], "case_types": [CLAIMS]})
        case = patient.cases.create("Acme-Claims", data={"claimant": "Bob"})
        oid = patient.send(to=[ALICE, BOB], subject="Your claim", body="Hi.", case_id=case.id)
        run_agent(patient)
        sink.rcpt_replies.clear()
        sink.data_replies.clear()
        for _ in range(3):
            if patient.outbox_entry(oid).status is not OutboxStatus.RETRY:
                break
            wait_until_due(patient, oid)
            run_agent(patient)

    entry = patient.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert {r.address for r in entry.recipients if r.state is RecipientState.ACCEPTED} == {
        ALICE,
        BOB,
    }
    final = patient.cases.get(case.id)
    assert [a.name for a in final.attachments] == [f"email-{oid}.eml"]
    assert [h.action for h in final.history].count("email-sent") == 1
    _, eml = patient.cases.attachment(case.id, f"email-{oid}.eml")
    first = sink.received[0]
    assert eml.replace(b"\r\n", b"\n") == first.raw.replace(b"\r\n", b"\n")


# --- outbox retry and cancel -----------------------------------------------------------


def test_failed_row_retried_by_an_admin_is_delivered(postroom: Postroom) -> None:
    sink = SmtpSink(rcpt_replies={ALICE: "550 5.1.1 no such user"})
    with smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        run_agent(postroom)
        assert postroom.outbox_entry(oid).status is OutboxStatus.FAILED

        sink.rcpt_replies.clear()
        again = postroom.retry(oid)
        assert again.status is OutboxStatus.QUEUED
        assert again.attempts == 0
        assert states(postroom, oid) == {ALICE: RecipientState.PENDING}
        run_agent(postroom)

    entry = postroom.outbox_entry(oid)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 1
    [received] = sink.received
    assert received.rcpt_tos == [ALICE]


def test_cancelled_row_is_not_sent(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        cancelled = queue(postroom, ALICE, subject="cancelled")
        kept = queue(postroom, BOB, subject="kept")
        assert postroom.cancel(cancelled).status is OutboxStatus.CANCELLED
        stats = run_agent(postroom)

    assert stats.sent == 1
    assert postroom.outbox_entry(cancelled).status is OutboxStatus.CANCELLED
    assert postroom.outbox_entry(cancelled).attempts == 0
    assert postroom.outbox_entry(kept).status is OutboxStatus.SENT
    assert [r.message["Subject"] for r in srv.sink.received] == ["kept"]


def test_cancelling_a_sent_row_is_refused(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        oid = queue(postroom, ALICE)
        run_agent(postroom)

    assert postroom.outbox_entry(oid).status is OutboxStatus.SENT
    with pytest.raises(StateError):
        postroom.cancel(oid)
    with pytest.raises(StateError):
        postroom.retry(oid)
    assert postroom.outbox_entry(oid).status is OutboxStatus.SENT


def test_an_email_without_a_subject_is_refused(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(2525)]})
        for body in (None, "<p>only a body</p>"):
            with pytest.raises(MessageError, match="has no subject"):
                pr.send(to=[ALICE], body=body, subject=" ", class_name="Default")
        assert pr.outbox() == []
