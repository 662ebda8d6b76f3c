"""What one delivery attempt means for an outbox row: a pure decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from postroom.errors import (
    CredentialsRejectedError,
    DeliveryError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    ThrottledError,
)
from postroom.outbox.classify import Verdict
from postroom.outbox.models import (
    ClaimedEmail,
    DeliveryReport,
    Outcome,
    Recipient,
    RecipientState,
)
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.status import Hold, OutboxStatus

HELD_STAGE = "hold"  # a row held without asking: its account already was


def decide(
    email: ClaimedEmail,
    result: DeliveryReport | DeliveryError,
    *,
    policy: RetryPolicy,
    now: datetime,
    hold_unknown: bool = False,
) -> Outcome:
    """The outcome of one attempt: per-recipient states, status and next attempt.

    ``hold_unknown``: an attempt whose outcome is unknown waits for a person instead of
    being retried (the account's ``on_unknown_outcome: hold``). An email whose next
    attempt would come at or after its ``expires_at`` expires instead.
    """
    outcome = _storable(_decide(email, result, policy=policy, now=now, hold_unknown=hold_unknown))
    waits = outcome.status in (OutboxStatus.RETRY, OutboxStatus.HELD)
    if waits and email.expires_at is not None and outcome.next_attempt_at >= email.expires_at:
        return replace(
            outcome,
            status=OutboxStatus.EXPIRED,
            hold=None,
            last_error=f"expired at {email.expires_at:%Y-%m-%d %H:%M:%S} UTC before its next "
            f"attempt; last error: {outcome.last_error}",
        )
    return outcome


def _storable(outcome: Outcome) -> Outcome:
    """The outcome with any NUL in a server's words shown as U+FFFD.

    Servers write what they like in replies; PostgreSQL cannot store NUL in text, and a
    write that fails on it would never succeed, leaving the email claimed for good.
    """
    texts = (outcome.last_error or "", outcome.last_enhanced or "")
    if not any("\x00" in t for t in texts) and not any(
        "\x00" in r.text or "\x00" in (r.enhanced or "") for r in outcome.recipients
    ):
        return outcome
    return replace(
        outcome,
        last_error=_shown(outcome.last_error),
        last_enhanced=_shown(outcome.last_enhanced),
        recipients=tuple(
            replace(r, text=_shown(r.text) or "", enhanced=_shown(r.enhanced))
            for r in outcome.recipients
        ),
    )


def _shown(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "\ufffd")


def expired(email: ClaimedEmail, now: datetime) -> Outcome:
    """A claimed email whose time ran out before its turn came: not sent, never will be."""
    return Outcome(
        id=email.id,
        status=OutboxStatus.EXPIRED,
        recipients=email.recipients,
        next_attempt_at=now,
        last_error=f"expired at {email.expires_at:%Y-%m-%d %H:%M:%S} UTC before it was sent",
        refund=True,
    )


def nobody_left(email: ClaimedEmail, now: datetime) -> Outcome:
    """A claimed email whose open recipients are all suppressed: failed, never sent."""
    suppressed = [r for r in email.recipients if r.state is RecipientState.SUPPRESSED]
    listed = "; ".join(f"{r.address} ({r.text})" if r.text else r.address for r in suppressed)
    delivered = any(r.state is RecipientState.ACCEPTED for r in email.recipients)
    return Outcome(
        id=email.id,
        status=OutboxStatus.SENT if delivered else OutboxStatus.FAILED,
        recipients=email.recipients,
        next_attempt_at=now,
        last_error=f"not sent: every remaining recipient is suppressed: {listed}",
        refund=True,
    )


def _decide(
    email: ClaimedEmail,
    result: DeliveryReport | DeliveryError,
    *,
    policy: RetryPolicy,
    now: datetime,
    hold_unknown: bool,
) -> Outcome:
    if isinstance(result, CredentialsRejectedError):
        # Nothing is wrong with the email: it waits for the account, uncounted.
        held = _waiting(email, now, OutboxStatus.HELD, f"held: {result.text}", hold=Hold.ACCOUNT)
        return replace(held, credentials_refused=result.stage != HELD_STAGE)
    if isinstance(result, ThrottledError):
        later = now + timedelta(seconds=result.retry_after)
        return _waiting(email, later, OutboxStatus.RETRY, str(result), code=result.code)
    if isinstance(result, OutcomeUnknownError) and hold_unknown:
        # An attempt was made (it counts): whether it went through, a person finds out.
        why = (
            f"outcome unknown, held for a person: {result}; check the mailbox's Sent Items, "
            "then retry or cancel"
        )
        return _waiting(email, now, OutboxStatus.HELD, why, hold=Hold.OUTCOME, counted=True)
    before = sum(r.state is RecipientState.ACCEPTED for r in email.recipients)
    error: str | None
    if isinstance(result, DeliveryError):
        recipients = _after_error(email.recipients, result)
        code, enhanced, error = result.code, result.enhanced, str(result)
    else:
        recipients = _after_report(email.recipients, result)
        code, enhanced, error = _summary(result)
    accepted = sum(r.state is RecipientState.ACCEPTED for r in recipients)
    still_open = [r for r in recipients if r.open]

    status = OutboxStatus.SENT if accepted else OutboxStatus.FAILED
    next_at = now
    if still_open:
        give_up = policy.gives_up(attempts=email.attempts, created_at=email.created_at, now=now)
        if give_up is None:
            status = OutboxStatus.RETRY
            next_at = now + timedelta(seconds=policy.delay(email.attempts))
        else:
            error = f"{give_up}; last error: {error}" if error else give_up
            recipients = tuple(
                r if not r.open else Recipient(r.address, RecipientState.REFUSED, r.code, give_up)
                for r in recipients
            )
    return Outcome(
        id=email.id,
        status=status,
        recipients=recipients,
        next_attempt_at=next_at,
        last_code=code,
        last_enhanced=enhanced,
        last_error=error,
        sent_at=now if accepted and not before else None,
        newly_delivered=accepted > 0 and before == 0,
        outcome_unknown=isinstance(result, OutcomeUnknownError),
    )


def _waiting(
    email: ClaimedEmail,
    at: datetime,
    status: OutboxStatus,
    error: str,
    *,
    hold: Hold | None = None,
    code: int | None = None,
    counted: bool = False,
) -> Outcome:
    """An email that waits with its recipients untouched; uncounted unless ``counted``."""
    return Outcome(
        id=email.id,
        status=status,
        recipients=email.recipients,
        next_attempt_at=at,
        last_code=code,
        last_error=error,
        hold=hold,
        refund=not counted,
        outcome_unknown=counted,
    )


def _after_error(recipients: tuple[Recipient, ...], error: DeliveryError) -> tuple[Recipient, ...]:
    state = (
        RecipientState.REFUSED
        if isinstance(error, PermanentDeliveryError)
        else RecipientState.DEFERRED
    )
    return tuple(
        Recipient(r.address, state, error.code, error.text) if r.open else r for r in recipients
    )


def _after_report(
    recipients: tuple[Recipient, ...], report: DeliveryReport
) -> tuple[Recipient, ...]:
    accepted = {a.lower() for a in report.accepted}
    refused = {a.lower(): r for a, r in report.refused.items()}
    out = []
    for r in recipients:
        key = r.address.lower()
        if not r.open:
            out.append(r)
        elif key in accepted:
            out.append(Recipient(r.address, RecipientState.ACCEPTED, 250, report.reply))
        elif key in refused:
            ref = refused[key]
            state = (
                RecipientState.REFUSED
                if ref.verdict is Verdict.PERMANENT
                else RecipientState.DEFERRED
            )
            out.append(Recipient(r.address, state, ref.code, ref.text))
        else:
            out.append(r)
    return tuple(out)


def _summary(report: DeliveryReport) -> tuple[int | None, str | None, str | None]:
    if not report.refused:
        return None, None, None
    first = next(iter(report.refused.values()))
    listed = "; ".join(f"{a}: {r.code} {r.text}" for a, r in report.refused.items())
    return first.code, first.enhanced, f"refused recipients: {listed}"
