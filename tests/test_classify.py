"""Delivery classification and the retry decision: pure functions, table-driven."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from postroom.errors import PermanentDeliveryError, StateError, TransientDeliveryError
from postroom.outbox import ClaimedEmail, DeliveryReport, Refusal, RetryPolicy, Verdict
from postroom.outbox.classify import classify_reply, split_enhanced
from postroom.outbox.models import Recipient, RecipientState
from postroom.outbox.outcome import decide
from postroom.outbox.status import OutboxStatus, check_transition, sources_of

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "enhanced", "verdict"),
    [
        (250, "2.0.0", Verdict.SENT),
        (421, "4.7.0", Verdict.TRANSIENT),
        (450, "4.2.1", Verdict.TRANSIENT),
        (451, None, Verdict.TRANSIENT),
        (452, "4.5.3", Verdict.TRANSIENT),
        (550, "5.1.1", Verdict.PERMANENT),
        (553, None, Verdict.PERMANENT),
        (554, "5.7.1", Verdict.PERMANENT),
        (554, "5.2.0", Verdict.TRANSIENT),  # Exchange quota: passes
        (552, "5.2.2", Verdict.TRANSIENT),  # mailbox full
        (552, "5.3.4", Verdict.PERMANENT),  # message too big: retrying cannot help
    ],
)
def test_reply_classification(code: int, enhanced: str | None, verdict: Verdict) -> None:
    assert classify_reply(code, enhanced).verdict is verdict


def test_known_replies_are_explained() -> None:
    assert "SMTP AUTH is disabled" in classify_reply(535, "5.7.139").explanation
    assert "STARTTLS" in classify_reply(530, "5.7.0").explanation
    assert classify_reply(550, "5.1.1").explanation == "the recipient's mailbox does not exist"


def test_split_enhanced() -> None:
    assert split_enhanced("5.7.139 Authentication unsuccessful") == (
        "5.7.139",
        "Authentication unsuccessful",
    )
    assert split_enhanced("Requested action aborted") == (None, "Requested action aborted")
    assert split_enhanced("7.1.1 not an enhanced code") == (None, "7.1.1 not an enhanced code")


def claimed(
    *addresses: str, attempts: int = 1, states: dict[str, RecipientState] | None = None
) -> ClaimedEmail:
    states = states or {}
    return ClaimedEmail(
        id=1,
        message_id="<m@example.com>",
        case_id=None,
        account="Default",
        subject="s",
        mail_from="noreply@example.com",
        recipients=tuple(Recipient(a, states.get(a, RecipientState.PENDING)) for a in addresses),
        message=b"x",
        attempts=attempts,
        created_at=NOW - timedelta(minutes=1),
    )


POLICY = RetryPolicy(max_attempts=3, base=10, cap=100)


def test_all_accepted_is_sent() -> None:
    out = decide(
        claimed("a@example.com"),
        DeliveryReport(accepted=("a@example.com",)),
        policy=POLICY,
        now=NOW,
    )
    assert out.status is OutboxStatus.SENT
    assert out.newly_delivered
    assert out.sent_at == NOW


def test_transient_error_retries_with_backoff() -> None:
    err = TransientDeliveryError("busy", code=421, stage="connect")
    out = decide(claimed("a@example.com"), err, policy=POLICY, now=NOW)
    assert out.status is OutboxStatus.RETRY
    assert NOW + timedelta(seconds=5) <= out.next_attempt_at <= NOW + timedelta(seconds=10)
    assert out.recipients[0].state is RecipientState.DEFERRED
    assert out.last_code == 421


def test_permanent_error_fails_without_retry() -> None:
    err = PermanentDeliveryError("rejected", code=554, enhanced="5.6.0", stage="MAIL FROM")
    out = decide(claimed("a@example.com", "b@example.com"), err, policy=POLICY, now=NOW)
    assert out.status is OutboxStatus.FAILED
    assert all(r.state is RecipientState.REFUSED for r in out.recipients)


def test_gives_up_after_max_attempts() -> None:
    err = TransientDeliveryError("busy", code=451)
    out = decide(claimed("a@example.com", attempts=3), err, policy=POLICY, now=NOW)
    assert out.status is OutboxStatus.FAILED
    assert out.last_error is not None
    assert out.last_error.startswith("gave up after 3 attempts")


def test_gives_up_on_age() -> None:
    policy = RetryPolicy(max_attempts=99, max_age=timedelta(seconds=30))
    out = decide(claimed("a@example.com"), TransientDeliveryError("busy"), policy=policy, now=NOW)
    assert out.status is OutboxStatus.FAILED
    assert "older than" in (out.last_error or "")


def test_partial_refusal_is_per_recipient() -> None:
    report = DeliveryReport(
        accepted=("a@example.com",),
        refused={
            "b@example.com": Refusal(550, "no such user", Verdict.PERMANENT, "5.1.1"),
            "c@example.com": Refusal(450, "later", Verdict.TRANSIENT, "4.2.1"),
        },
    )
    out = decide(
        claimed("a@example.com", "b@example.com", "c@example.com"), report, policy=POLICY, now=NOW
    )
    states = {r.address: r.state for r in out.recipients}
    assert states == {
        "a@example.com": RecipientState.ACCEPTED,
        "b@example.com": RecipientState.REFUSED,
        "c@example.com": RecipientState.DEFERRED,
    }
    assert out.status is OutboxStatus.RETRY  # c is still open
    assert out.newly_delivered


def test_retry_after_partial_delivery_is_not_newly_delivered() -> None:
    row = claimed(
        "a@example.com",
        "c@example.com",
        attempts=2,
        states={"a@example.com": RecipientState.ACCEPTED, "c@example.com": RecipientState.DEFERRED},
    )
    assert row.open_recipients == ["c@example.com"]
    out = decide(row, DeliveryReport(accepted=("c@example.com",)), policy=POLICY, now=NOW)
    assert out.status is OutboxStatus.SENT
    assert not out.newly_delivered
    assert out.sent_at is None  # kept from the first delivery


def test_all_refused_permanently_fails() -> None:
    report = DeliveryReport(refused={"b@example.com": Refusal(550, "no", Verdict.PERMANENT)})
    out = decide(claimed("b@example.com"), report, policy=POLICY, now=NOW)
    assert out.status is OutboxStatus.FAILED
    assert out.last_error == "refused recipients: b@example.com: 550 no"


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base=10, cap=60)
    rng = random.Random(7)
    delays = [policy.delay(n, rng=rng) for n in range(1, 8)]
    assert 5 <= delays[0] <= 10
    assert 10 <= delays[1] <= 20
    assert all(30 <= d <= 60 for d in delays[3:])


def test_transition_table() -> None:
    check_transition(OutboxStatus.QUEUED, OutboxStatus.SENDING, what="x")
    check_transition(OutboxStatus.FAILED, OutboxStatus.QUEUED, what="x")
    with pytest.raises(StateError, match="from sent it can go to nothing"):
        check_transition(OutboxStatus.SENT, OutboxStatus.QUEUED, what="x")
    with pytest.raises(StateError):
        check_transition(OutboxStatus.SENDING, OutboxStatus.CANCELLED, what="x")
    assert OutboxStatus.SENT not in sources_of(OutboxStatus.QUEUED)
