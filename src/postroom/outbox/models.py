"""Value objects of the outbox: what is enqueued, claimed, reported and recorded."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and how far its delivery got."""

    address: str
    state: RecipientState = RecipientState.PENDING
    code: int | None = None
    text: str = ""

    @property
    def open(self) -> bool:
        return self.state in (RecipientState.PENDING, RecipientState.DEFERRED)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": str(self.state),
            "code": self.code,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipient:
        return cls(
            address=data["address"],
            state=RecipientState(data.get("state", "pending")),
            code=data.get("code"),
            text=data.get("text", ""),
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
