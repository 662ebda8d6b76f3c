"""The durable outbox: enqueue in the caller's transaction, claim under a lease, record.

``OutboxStore`` combines the parts: writing new rows and reading and steering them
here, leased claims in ``claims.py``, attempts' outcomes in ``recording.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from postroom.bounces.verp import new_token
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError, StateError
from postroom.outbox.claims import Claims
from postroom.outbox.events import EVENT_COLUMNS, Written, email_event, queued_again
from postroom.outbox.models import NewEmail, OutboxEntry, Recipient, RecipientState
from postroom.outbox.recording import Recording
from postroom.outbox.status import Hold, OutboxStatus, Priority, check_transition, sources_of
from postroom.outbox.wakeup import announce
from postroom.webhooks.events import emit
from postroom.webhooks.models import EventType

t = tables.outbox

_ENTRY_COLUMNS = [c for c in t.c if c.name != "message"]


def _entry(row: Any) -> OutboxEntry:
    m = row._mapping
    return OutboxEntry(
        **{
            k: m[k]
            for k in OutboxEntry.__dataclass_fields__
            if k not in ("recipients", "status", "hold", "priority")
        },
        recipients=tuple(Recipient.from_json(r) for r in m["recipients"]),
        status=OutboxStatus(m["status"]),
        hold=Hold(m["hold"]) if m["hold"] else None,
        priority=Priority.of_rank(m["priority"]),
    )


class OutboxStore(Claims, Recording):
    """All reads and writes of outbox rows."""

    def enqueue(
        self,
        conn: Connection,
        email: NewEmail,
        *,
        now: datetime | None = None,
        hold: Hold | None = None,
    ) -> int:
        """Write a queued email in the caller's transaction; returns its outbox id.

        With ``hold`` it is written held for that reason instead: never claimed until
        released (``retry``) or cancelled.
        """
        return self.enqueue_many(conn, [email], now=now, hold=hold)[0]

    def enqueue_many(
        self,
        conn: Connection,
        emails: Sequence[NewEmail],
        *,
        now: datetime | None = None,
        hold: Hold | None = None,
        review_id: int | None = None,
    ) -> list[int]:
        """Write emails in the caller's transaction: queued, held for ``hold``, or, with
        ``review_id``, awaiting that review (never claimed until it is approved)."""
        now = now or utcnow()
        if hold is not None and review_id is not None:
            raise ValueError("an email is held or awaits a review, not both")
        status = OutboxStatus.QUEUED
        if hold is not None:
            status = OutboxStatus.HELD
        elif review_id is not None:
            status = OutboxStatus.AWAITING_REVIEW
        rows = [
            {
                "message_id": e.message_id,
                "case_id": e.case_id,
                "account": e.account,
                "subject": e.subject,
                "mail_from": e.mail_from,
                "recipients": [Recipient(a).to_json() for a in e.recipients],
                "message": e.message,
                "status": status.value,
                "hold": hold.value if hold is not None else None,
                "attempts": 0,
                "next_attempt_at": max(e.send_after, now) if e.send_after else now,
                "priority": e.priority.rank,
                "expires_at": e.expires_at,
                "bounce_token": new_token(),
                "correspondence": e.correspondence,
                "correspondence_version": e.version,
                "language": e.language,
                "review_id": review_id,
                "created_at": now,
                "updated_at": now,
            }
            for e in emails
        ]
        if not rows:
            return []
        result = conn.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), rows)
        ids = [r.id for r in result]
        if status is OutboxStatus.QUEUED:
            announce(conn)  # idle agents wake once this transaction commits
        extra: dict[str, object]
        if hold is not None:
            kind, extra = EventType.EMAIL_HELD, {"reason": hold.value}
        elif review_id is not None:
            kind, extra = EventType.EMAIL_AWAITING_REVIEW, {"review_id": review_id}
        else:
            kind, extra = EventType.EMAIL_QUEUED, {}
        emit(
            conn,
            [
                email_event(kind, Written.of(i, e), status, **extra)
                for i, e in zip(ids, emails, strict=True)
            ],
        )
        return ids

    def record_unbuildable(
        self,
        conn: Connection,
        *,
        message_id: str,
        case_id: str | None,
        account: str | None,
        subject: str,
        error: str,
        now: datetime | None = None,
    ) -> int:
        """Keep an email that could not be built as a failed row, so nothing is silently lost."""
        now = now or utcnow()
        result = conn.execute(
            insert(t)
            .values(
                message_id=message_id,
                case_id=case_id,
                account=account,
                subject=subject,
                mail_from="",
                recipients=[],
                message=None,
                status=OutboxStatus.FAILED.value,
                attempts=0,
                next_attempt_at=now,
                last_error=error,
                created_at=now,
                updated_at=now,
            )
            .returning(*EVENT_COLUMNS)
        )
        row = result.one()
        emit(conn, [email_event(EventType.EMAIL_FAILED, row, OutboxStatus.FAILED, error=error)])
        return int(row.id)

    # --- reading and steering --------------------------------------------------------

    def get(self, conn: Connection, outbox_id: int) -> OutboxEntry:
        row = conn.execute(select(*_ENTRY_COLUMNS).where(t.c.id == outbox_id)).first()
        if row is None:
            raise NotFoundError(f"no outbox email with id {outbox_id}")
        return _entry(row)

    def message_bytes(self, conn: Connection, outbox_id: int) -> bytes | None:
        row = conn.execute(select(t.c.message).where(t.c.id == outbox_id)).first()
        if row is None:
            raise NotFoundError(f"no outbox email with id {outbox_id}")
        return None if row.message is None else bytes(row.message)

    def list(
        self,
        conn: Connection,
        *,
        status: OutboxStatus | None = None,
        case_id: str | None = None,
        account: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[OutboxEntry]:
        query = select(*_ENTRY_COLUMNS).order_by(t.c.id.desc()).limit(limit).offset(offset)
        if account is not None:
            query = query.where(t.c.account == account)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if case_id is not None:
            query = query.where(t.c.case_id == case_id)
        return [_entry(row) for row in conn.execute(query)]

    def counts(self, conn: Connection) -> dict[OutboxStatus, int]:
        rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status))
        counts = dict.fromkeys(OutboxStatus, 0)
        counts.update({OutboxStatus(s): n for s, n in rows})
        return counts

    def retry(self, conn: Connection, outbox_id: int) -> OutboxEntry:
        """Queue a failed, cancelled or waiting email again, now, with a fresh attempt budget."""
        entry = self.get(conn, outbox_id)
        _not_under_review(conn, entry, "retried")
        check_transition(entry.status, OutboxStatus.QUEUED, what=f"outbox email {outbox_id}")
        if entry.status is OutboxStatus.SENDING:
            raise StateError(f"outbox email {outbox_id} is being sent right now")
        if self.message_bytes(conn, outbox_id) is None:
            raise StateError(
                f"outbox email {outbox_id} was never built ({entry.last_error}); "
                "fix the cause and send it again"
            )
        # Refused recipients get another chance; accepted ones are never sent to twice.
        reopened = [
            Recipient(r.address) if r.state is RecipientState.REFUSED else r
            for r in entry.recipients
        ]
        self._move(
            conn,
            outbox_id,
            OutboxStatus.QUEUED,
            attempts=0,
            next_attempt_at=utcnow(),
            recipients=[r.to_json() for r in reopened],
        )
        entry = self.get(conn, outbox_id)
        emit(conn, queued_again([entry]))
        announce(conn)
        return entry

    def cancel(self, conn: Connection, outbox_id: int) -> OutboxEntry:
        entry = self.get(conn, outbox_id)
        _not_under_review(conn, entry, "cancelled")
        check_transition(entry.status, OutboxStatus.CANCELLED, what=f"outbox email {outbox_id}")
        self._move(conn, outbox_id, OutboxStatus.CANCELLED)
        return self.get(conn, outbox_id)

    def _move(self, conn: Connection, outbox_id: int, new: OutboxStatus, **values: Any) -> None:
        # Guarded by the allowed source statuses, so a concurrent claim wins cleanly.
        result = conn.execute(
            update(t)
            .where(t.c.id == outbox_id, t.c.status.in_([s.value for s in sources_of(new)]))
            .where(t.c.status != OutboxStatus.SENDING.value)
            # Only its review's approval queues an email awaiting review (reviews/service).
            .where(t.c.status != OutboxStatus.AWAITING_REVIEW.value)
            .values(status=new.value, hold=None, updated_at=utcnow(), **values)
        )
        if result.rowcount != 1:
            raise StateError(f"outbox email {outbox_id} changed status meanwhile; look again")


def _not_under_review(conn: Connection, entry: OutboxEntry, done: str) -> None:
    """An email awaiting review is decided by its review: approved or rejected, not steered."""
    if entry.status is OutboxStatus.AWAITING_REVIEW:
        review_id = conn.execute(select(t.c.review_id).where(t.c.id == entry.id)).scalar()
        review = f"review #{review_id}" if review_id is not None else "its review"
        raise StateError(
            f"outbox email {entry.id} awaits {review}: it cannot be {done}; approve the "
            f"review to send it, or reject it (with a reason) to stop it"
        )
