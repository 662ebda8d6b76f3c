"""The webhook events of outbox rows: which change of a row reports what.

Built here, written by the caller with ``webhooks.events.emit`` in the transaction of
the change, so an event exists exactly when its change was committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from postroom.db import tables
from postroom.outbox.models import NewEmail, Outcome
from postroom.outbox.status import OutboxStatus
from postroom.webhooks.models import Event, EventType
from postroom.webhooks.payloads import email_data


class EmailRow(Protocol):
    """What an event needs of an outbox row (a claimed row, an entry, a result row)."""

    @property
    def id(self) -> int: ...
    @property
    def message_id(self) -> str: ...
    @property
    def case_id(self) -> str | None: ...
    @property
    def account(self) -> str | None: ...
    @property
    def subject(self) -> str: ...


# The columns an UPDATE/INSERT … RETURNING reads so an event can be told of its rows.
_t = tables.outbox
EVENT_COLUMNS = (_t.c.id, _t.c.message_id, _t.c.case_id, _t.c.account, _t.c.subject)


@dataclass(frozen=True, slots=True)
class Written:
    """A row just inserted, known by its new id and what was written."""

    id: int
    message_id: str
    case_id: str | None
    account: str | None
    subject: str

    @classmethod
    def of(cls, outbox_id: int, email: NewEmail) -> Written:
        return cls(outbox_id, email.message_id, email.case_id, email.account, email.subject)


def email_event(kind: EventType, row: EmailRow, status: OutboxStatus, **extra: Any) -> Event:
    """One ``email.*`` event about ``row``, now in ``status``; ``extra`` joins its data."""
    data = email_data(
        email_id=row.id,
        message_id=row.message_id,
        case_id=row.case_id,
        account=row.account,
        subject=row.subject,
        status=str(status),
    )
    return Event(kind, {**data, **extra})


def queued_again(rows: Iterable[EmailRow]) -> list[Event]:
    """``email.queued`` for rows that went back to the queue (retried, released)."""
    return [email_event(EventType.EMAIL_QUEUED, row, OutboxStatus.QUEUED) for row in rows]


def outcome_events(outcome: Outcome, row: EmailRow) -> list[Event]:
    """What one recorded attempt reports; a retry (or a later recipient) reports nothing.

    ``email.sent`` comes once, with the first accepted recipient; a partial delivery
    whose other recipients then fail or expire reports that too.
    """
    events: list[Event] = []
    if outcome.newly_delivered:
        events.append(email_event(EventType.EMAIL_SENT, row, outcome.status))
    if outcome.status is OutboxStatus.FAILED:
        events.append(
            email_event(EventType.EMAIL_FAILED, row, outcome.status, error=outcome.last_error)
        )
    elif outcome.status is OutboxStatus.EXPIRED:
        events.append(email_event(EventType.EMAIL_EXPIRED, row, outcome.status))
    elif outcome.status is OutboxStatus.HELD:
        reason = outcome.hold.value if outcome.hold is not None else None
        events.append(email_event(EventType.EMAIL_HELD, row, outcome.status, reason=reason))
    return events
