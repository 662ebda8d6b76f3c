"""Webhook events, endpoints and deliveries: the values and the delivery statuses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from postroom.errors import StateError


class EventType(StrEnum):
    """What an application may hear about."""

    EMAIL_QUEUED = "email.queued"
    EMAIL_SENT = "email.sent"
    EMAIL_FAILED = "email.failed"
    EMAIL_BOUNCED = "email.bounced"
    EMAIL_DELAYED = "email.delayed"
    EMAIL_COMPLAINED = "email.complained"
    EMAIL_EXPIRED = "email.expired"
    EMAIL_HELD = "email.held"
    EMAIL_SUPPRESSED = "email.suppressed"
    EMAIL_RECEIVED = "email.received"
    EMAIL_AWAITING_REVIEW = "email.awaiting_review"
    EMAIL_REJECTED = "email.rejected"  # its reviewer refused it: nothing was sent
    CASE_CREATED = "case.created"
    CASE_STATUS_CHANGED = "case.status_changed"


@dataclass(frozen=True, slots=True)
class Event:
    """One change to report: its type and the ``data`` of the payload."""

    type: EventType
    data: Mapping[str, Any]


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for next_attempt_at
    SENDING = "sending"  # claimed by an agent under a lease
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # the retry window passed, or the endpoint is gone; redeliver re-opens


D = DeliveryStatus

TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.PENDING: frozenset({D.SENDING, D.FAILED}),
    # SENDING -> SENDING: another agent re-claims a delivery whose lease expired.
    D.SENDING: frozenset({D.DELIVERED, D.PENDING, D.FAILED, D.SENDING}),
    D.DELIVERED: frozenset({D.PENDING}),  # redelivered by an admin
    D.FAILED: frozenset({D.PENDING}),  # redelivered by an admin
}


def check_transition(current: DeliveryStatus, new: DeliveryStatus, *, what: str) -> None:
    """Raise :class:`StateError` unless the table allows ``current`` → ``new``."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        raise StateError(f"{what} is {current}; from {current} it can go to {allowed}, not {new}")


def sources_of(new: DeliveryStatus) -> tuple[DeliveryStatus, ...]:
    """Every status from which ``new`` may be reached (for guarded UPDATEs)."""
    return tuple(s for s, targets in TRANSITIONS.items() if new in targets)


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One try of a delivery: the endpoint's status code, or why there was none."""

    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """An event on its way to one endpoint, as shown to people."""

    id: int
    event_id: str
    event_type: EventType
    endpoint: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str  # the JSON body exactly as signed and sent
