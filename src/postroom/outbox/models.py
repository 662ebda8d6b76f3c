"""Value objects of the outbox: what is enqueued, claimed, reported and recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from postroom.outbox.classify import Verdict
from postroom.outbox.status import Hold, OutboxStatus, Priority


class RecipientState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DEFERRED = "deferred"  # refused with 4xx: tried again on the next attempt
    REFUSED = "refused"  # refused with 5xx: never tried again
    # Not attempted: the address is on the suppression list (text says why).
    SUPPRESSED = "suppressed"
    # After the server accepted it, a delivery report came back:
    BOUNCED = "bounced"  # not delivered, and will not be
    DELAYED = "delayed"  # not delivered yet; the email stays sent
    COMPLAINED = "complained"  # delivered, and reported as spam by its recipient


R = RecipientState
_STATES: dict[object, RecipientState] = {s.value: s for s in RecipientState}

# What a delivery report may change. Sending changes pending/deferred (see outcome.py);
# a report speaks of an accepted recipient only, and a final word is never taken back.
REPORT_TRANSITIONS: dict[RecipientState, frozenset[RecipientState]] = {
    R.ACCEPTED: frozenset({R.BOUNCED, R.DELAYED, R.COMPLAINED}),
    R.DELAYED: frozenset({R.BOUNCED, R.DELAYED, R.COMPLAINED}),
    R.BOUNCED: frozenset({R.COMPLAINED}),  # a complaint about a bounce is still noted
    R.COMPLAINED: frozenset(),
    R.PENDING: frozenset(),
    R.DEFERRED: frozenset(),
    R.REFUSED: frozenset(),
    R.SUPPRESSED: frozenset(),
}


def report_may_change(current: RecipientState, new: RecipientState) -> bool:
    """Whether a delivery report saying ``new`` may change a recipient in ``current``."""
    return new in REPORT_TRANSITIONS[current]


_REPORTED = frozenset({RecipientState.BOUNCED, RecipientState.DELAYED, RecipientState.COMPLAINED})


def keep_reported(
    recipients: Sequence[Recipient], stored: Sequence[Recipient]
) -> tuple[Recipient, ...]:
    """``recipients``, except that an accepted one keeps what a report stored for it."""
    reported = {r.address.lower(): r for r in stored if r.state in _REPORTED}
    return tuple(
        reported.get(r.address.lower(), r) if r.state is RecipientState.ACCEPTED else r
        for r in recipients
    )


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and how far its delivery got.

    ``code`` and ``text`` are the last SMTP reply, or what a delivery report said;
    ``enhanced`` is its RFC 3463 status (``5.1.1``) when known.
    """

    address: str
    state: RecipientState = RecipientState.PENDING
    code: int | None = None
    text: str = ""
    enhanced: str | None = None

    @property
    def open(self) -> bool:
        return self.state in (RecipientState.PENDING, RecipientState.DEFERRED)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "address": self.address,
            "state": str(self.state),
            "code": self.code,
            "text": self.text,
        }
        if self.enhanced is not None:
            data["enhanced"] = self.enhanced
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipient:
        state = data.get("state", "pending")
        return cls(
            data["address"],
            # A dict lookup: the enum's own lookup by value costs more (every claimed row).
            _STATES.get(state) or RecipientState(state),
            data.get("code"),
            data.get("text", ""),
            data.get("enhanced"),
        )


@dataclass(frozen=True, slots=True)
class NewEmail:
    """A fully built email to write into the outbox."""

    message_id: str
    account: str
    subject: str
    mail_from: str
    recipients: tuple[str, ...]
    message: bytes
    case_id: str | None = None
    priority: Priority = Priority.NORMAL
    send_after: datetime | None = None  # not claimed before (a scheduled send)
    expires_at: datetime | None = None  # never sent at or after; then status 'expired'
    # What it was rendered from, kept on the row: the correspondence and its version
    # (None for inline or ad-hoc text), and the language of the text chosen.
    correspondence: str | None = None
    version: int | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedEmail:
    """An outbox row an agent holds under a lease."""

    id: int
    message_id: str
    case_id: str | None
    account: str
    subject: str
    mail_from: str
    recipients: tuple[Recipient, ...]
    message: bytes
    attempts: int
    created_at: datetime
    expires_at: datetime | None = None
    bounce_token: str | None = None  # VERP and DSN ENVID; None on rows from before it

    @property
    def open_recipients(self) -> list[str]:
        return [r.address for r in self.recipients if r.open]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A recipient the server refused, with its reply."""

    code: int
    text: str
    verdict: Verdict
    enhanced: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What the server did with each recipient of one send."""

    accepted: tuple[str, ...] = ()
    refused: dict[str, Refusal] = field(default_factory=dict)
    reply: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The new state of a claimed row after one attempt."""

    id: int
    status: OutboxStatus
    recipients: tuple[Recipient, ...]
    next_attempt_at: datetime
    last_code: int | None = None
    last_enhanced: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    newly_delivered: bool = False
    hold: Hold | None = None  # why a HELD row waits
    # The attempt does not count against the budget: the service asked to wait, or the
    # account is held. Nothing was refused.
    refund: bool = False
    outcome_unknown: bool = False  # the request went out and no answer came back
    # The identity provider or service refused the account's credentials just now (not a
    # row held without asking because its account already was).
    credentials_refused: bool = False


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An outbox row as shown to people (the message bytes are fetched separately)."""

    id: int
    message_id: str
    case_id: str | None
    account: str | None
    subject: str
    mail_from: str
    recipients: tuple[Recipient, ...]
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    hold: Hold | None
    last_code: int | None
    last_enhanced: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    priority: Priority = Priority.NORMAL
    expires_at: datetime | None = None
    # What it was rendered from (None for ad-hoc text): proof of what was sent.
    correspondence: str | None = None
    correspondence_version: int | None = None
    language: str | None = None
    review_id: int | None = None  # the review it awaits (or awaited)
