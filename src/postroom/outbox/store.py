"""The durable outbox: enqueue in the caller's transaction, claim under a lease, record.

Claiming is one atomic statement: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING …`` on PostgreSQL, and the same ``UPDATE … RETURNING`` under
SQLite's write lock, so no two live agents ever hold the same row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, union_all, update

from postroom.bounces.verp import new_token
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError, StateError
from postroom.outbox.events import Written, email_event, queued_again
from postroom.outbox.models import (
    ClaimedEmail,
    NewEmail,
    OutboxEntry,
    Outcome,
    Recipient,
    RecipientState,
    keep_reported,
)
from postroom.outbox.status import (
    DUE,
    Hold,
    OutboxStatus,
    Priority,
    check_transition,
    sources_of,
)
from postroom.webhooks.events import emit
from postroom.webhooks.models import EventType

t = tables.outbox

_CLAIM_COLUMNS = (
    t.c.id,
    t.c.message_id,
    t.c.case_id,
    t.c.account,
    t.c.subject,
    t.c.mail_from,
    t.c.recipients,
    t.c.message,
    t.c.attempts,
    t.c.created_at,
    t.c.expires_at,
    t.c.bounce_token,
)
_ENTRY_COLUMNS = [c for c in t.c if c.name != "message"]
# What an event says about a row (outbox/events.py EmailRow).
_EVENT_COLUMNS = (t.c.id, t.c.message_id, t.c.case_id, t.c.account, t.c.subject)


def _claimed(row: Any) -> ClaimedEmail:
    return ClaimedEmail(
        id=row.id,
        message_id=row.message_id,
        case_id=row.case_id,
        account=row.account,
        subject=row.subject,
        mail_from=row.mail_from,
        recipients=tuple(Recipient.from_json(r) for r in row.recipients),
        message=bytes(row.message),
        attempts=row.attempts,
        created_at=row.created_at,
        expires_at=row.expires_at,
        bounce_token=row.bounce_token,
    )


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


class OutboxStore:
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
    ) -> list[int]:
        now = now or utcnow()
        status = OutboxStatus.HELD if hold is not None else OutboxStatus.QUEUED
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
                "created_at": now,
                "updated_at": now,
            }
            for e in emails
        ]
        if not rows:
            return []
        result = conn.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), rows)
        ids = [r.id for r in result]
        if hold is None:
            kind, extra = EventType.EMAIL_QUEUED, {}
        else:
            kind, extra = EventType.EMAIL_HELD, {"reason": hold.value}
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
            .returning(*_EVENT_COLUMNS)
        )
        row = result.one()
        emit(conn, [email_event(EventType.EMAIL_FAILED, row, OutboxStatus.FAILED, error=error)])
        return int(row.id)

    def claim(
        self, conn: Connection, *, owner: str, limit: int, lease: float, now: datetime | None = None
    ) -> list[ClaimedEmail]:
        """Claim up to ``limit`` due rows (or rows whose lease expired) for ``owner``."""
        now = now or utcnow()
        # An expired email is never claimed; expire_due() gives it its final status.
        live = or_(t.c.expires_at.is_(None), t.c.expires_at > now)
        order = (t.c.priority, t.c.next_attempt_at, t.c.id)
        ways_due = [
            *(and_(t.c.status == s.value, t.c.next_attempt_at <= now) for s in DUE),
            and_(t.c.status == OutboxStatus.SENDING.value, t.c.lease_expires_at <= now),
        ]
        # One ordered, limited branch per status, each read from the claim index in its
        # order: a single query with an OR across statuses sorts every waiting row (with
        # a million queued, seconds per claim instead of milliseconds).
        branches = []
        for due in ways_due:
            branch = select(*order).where(due, live).order_by(*order).limit(limit)
            if conn.dialect.name == "postgresql":
                branch = branch.with_for_update(skip_locked=True)
            branches.append(select(branch.subquery()))
        candidates = union_all(*branches).subquery()
        pick = (
            select(candidates.c.id)
            .order_by(candidates.c.priority, candidates.c.next_attempt_at, candidates.c.id)
            .limit(limit)
        )
        return self._claim_where(conn, pick, owner=owner, lease=lease, now=now)

    def expire_due(
        self, conn: Connection, *, now: datetime | None = None
    ) -> list[tuple[int, str | None, str]]:
        """Expire every waiting email whose ``expires_at`` has come: (id, case, subject)."""
        now = now or utcnow()
        waiting = [s.value for s in sources_of(OutboxStatus.EXPIRED) if s != OutboxStatus.SENDING]
        result = conn.execute(
            update(t)
            .where(t.c.status.in_(waiting), t.c.expires_at <= now)
            .values(
                status=OutboxStatus.EXPIRED.value,
                hold=None,
                last_error=func.coalesce(t.c.last_error + "; ", "") + "expired before delivery",
                updated_at=now,
            )
            .returning(*_EVENT_COLUMNS)
        )
        rows = list(result)
        emit(conn, [email_event(EventType.EMAIL_EXPIRED, r, OutboxStatus.EXPIRED) for r in rows])
        return [(r.id, r.case_id, r.subject) for r in rows]

    def claim_ids(
        self, conn: Connection, ids: Iterable[int], *, owner: str, lease: float
    ) -> list[ClaimedEmail]:
        """Claim these rows if they are still queued (for immediate delivery)."""
        now = utcnow()
        pick = select(t.c.id).where(t.c.id.in_(list(ids)), t.c.status == OutboxStatus.QUEUED.value)
        if conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        return self._claim_where(conn, pick, owner=owner, lease=lease, now=now)

    def _claim_where(
        self,
        conn: Connection,
        pick: Any,
        *,
        owner: str,
        lease: float,
        now: datetime,
    ) -> list[ClaimedEmail]:
        """Lease the rows ``pick`` selects (on PostgreSQL, ``pick`` locks them itself)."""
        statement = (
            update(t)
            .where(t.c.id.in_(pick.scalar_subquery()), t.c.message.is_not(None))
            .values(
                status=OutboxStatus.SENDING.value,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease),
                attempts=t.c.attempts + 1,
                updated_at=now,
            )
            .returning(*_CLAIM_COLUMNS)
        )
        claimed = [_claimed(row) for row in conn.execute(statement)]
        claimed.sort(key=lambda c: c.id)
        return claimed

    def renew(self, conn: Connection, *, owner: str, lease: float) -> int:
        """Extend the lease of every row ``owner`` holds; returns how many."""
        now = utcnow()
        result = conn.execute(
            update(t)
            .where(t.c.lease_owner == owner, t.c.status == OutboxStatus.SENDING.value)
            .values(lease_expires_at=now + timedelta(seconds=lease))
        )
        return result.rowcount

    def extend_lapsed(self, conn: Connection, *, since: datetime, lease: float) -> int:
        """Give a fresh lease to rows whose lease ran out after ``since`` (an outage began).

        Time the database was away counts against nobody: an owner that lived through
        the outage writes its outcomes before another agent may take its rows over.
        """
        now = utcnow()
        result = conn.execute(
            update(t)
            .where(
                t.c.status == OutboxStatus.SENDING.value,
                t.c.lease_expires_at <= now,
                t.c.lease_expires_at > since,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease))
        )
        return result.rowcount

    def record(self, conn: Connection, outcome: Outcome, *, owner: str) -> bool:
        """Write an attempt's outcome if ``owner`` still holds the lease."""
        return outcome.id in self.record_many(conn, [outcome], owner=owner)

    def record_many(self, conn: Connection, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
        """Write many outcomes in one statement; returns the ids ``owner`` still held.

        The held rows are locked first (``FOR UPDATE`` on PostgreSQL, the write lock on
        SQLite), so the answer cannot change before the update.
        """
        if not outcomes:
            return set()
        held_query = select(t.c.id).where(
            t.c.id.in_([o.id for o in outcomes]),
            t.c.lease_owner == owner,
            t.c.status == OutboxStatus.SENDING.value,
        )
        if conn.dialect.name == "postgresql":
            held_query = held_query.with_for_update()
        held = {row.id for row in conn.execute(held_query)}
        outcomes = self._with_reports(conn, [o for o in outcomes if o.id in held])
        now = utcnow()
        params = [
            {
                "b_id": o.id,
                "b_status": o.status.value,
                "b_recipients": [r.to_json() for r in o.recipients],
                "b_next": o.next_attempt_at,
                "b_code": o.last_code,
                "b_enhanced": o.last_enhanced,
                "b_error": o.last_error,
                "b_sent_at": o.sent_at,
                "b_hold": o.hold.value if o.hold else None,
                "b_refund": int(o.refund),
            }
            for o in outcomes
            if o.id in held
        ]
        if params:
            statement = (
                update(t)
                .where(t.c.id == bindparam("b_id"), t.c.lease_owner == owner)
                .values(
                    status=bindparam("b_status"),
                    hold=bindparam("b_hold"),
                    attempts=t.c.attempts - bindparam("b_refund"),
                    recipients=bindparam("b_recipients", type_=t.c.recipients.type),
                    next_attempt_at=bindparam("b_next", type_=t.c.next_attempt_at.type),
                    lease_owner=None,
                    lease_expires_at=None,
                    last_code=bindparam("b_code"),
                    last_enhanced=bindparam("b_enhanced"),
                    last_error=bindparam("b_error"),
                    updated_at=now,
                    sent_at=func.coalesce(
                        bindparam("b_sent_at", type_=t.c.sent_at.type), t.c.sent_at
                    ),
                )
            )
            conn.execute(statement, params)
        return held

    def _with_reports(self, conn: Connection, outcomes: list[Outcome]) -> list[Outcome]:
        """Keep what delivery reports said meanwhile about recipients accepted earlier.

        A row sent to some recipients and retried for others can get a bounce for an
        accepted one while an agent holds it; that agent's outcome still says "accepted".
        Only such rows are read again (their locks are held already).
        """
        earlier = [
            o.id
            for o in outcomes
            if not o.newly_delivered
            and any(r.state is RecipientState.ACCEPTED for r in o.recipients)
        ]
        if not earlier:
            return outcomes
        stored = {
            row.id: [Recipient.from_json(r) for r in row.recipients]
            for row in conn.execute(select(t.c.id, t.c.recipients).where(t.c.id.in_(earlier)))
        }
        return [
            replace(o, recipients=keep_reported(o.recipients, stored[o.id]))
            if o.id in stored
            else o
            for o in outcomes
        ]

    def defer(self, conn: Connection, ids: Iterable[int], *, owner: str, until: datetime) -> int:
        """Put claimed rows back, uncounted, due at ``until`` (an account limit was reached)."""
        return self._unclaim(conn, ids, owner=owner, until=until)

    def release(self, conn: Connection, ids: Iterable[int], *, owner: str) -> int:
        """Give back rows claimed but not attempted (on shutdown), undoing the attempt count."""
        return self._unclaim(conn, ids, owner=owner, until=None)

    def _unclaim(
        self, conn: Connection, ids: Iterable[int], *, owner: str, until: datetime | None
    ) -> int:
        values: dict[str, Any] = {
            "status": OutboxStatus.QUEUED.value,
            "lease_owner": None,
            "lease_expires_at": None,
            "attempts": t.c.attempts - 1,
            "updated_at": utcnow(),
        }
        if until is not None:
            values["next_attempt_at"] = until
        result = conn.execute(
            update(t)
            .where(
                t.c.id.in_(list(ids)),
                t.c.lease_owner == owner,
                t.c.status == OutboxStatus.SENDING.value,
            )
            .values(values)
        )
        return result.rowcount

    def release_held(self, conn: Connection, account: str, *, now: datetime | None = None) -> int:
        """Queue again, now, every email held because ``account``'s credentials failed."""
        now = now or utcnow()
        result = conn.execute(
            update(t)
            .where(
                t.c.account == account,
                t.c.status == OutboxStatus.HELD.value,
                t.c.hold == Hold.ACCOUNT.value,
            )
            .values(
                status=OutboxStatus.QUEUED.value, hold=None, next_attempt_at=now, updated_at=now
            )
            .returning(*_EVENT_COLUMNS)
        )
        return _requeued(conn, result)

    def release_orphans(self, conn: Connection, *, now: datetime | None = None) -> int:
        """Queue again emails held for an account that is no longer held (a race lost)."""
        now = now or utcnow()
        holds = tables.account_holds
        result = conn.execute(
            update(t)
            .where(
                t.c.status == OutboxStatus.HELD.value,
                t.c.hold == Hold.ACCOUNT.value,
                t.c.account.not_in(select(holds.c.account).scalar_subquery()),
            )
            .values(
                status=OutboxStatus.QUEUED.value, hold=None, next_attempt_at=now, updated_at=now
            )
            .returning(*_EVENT_COLUMNS)
        )
        return _requeued(conn, result)

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
        return entry

    def cancel(self, conn: Connection, outbox_id: int) -> OutboxEntry:
        entry = self.get(conn, outbox_id)
        check_transition(entry.status, OutboxStatus.CANCELLED, what=f"outbox email {outbox_id}")
        self._move(conn, outbox_id, OutboxStatus.CANCELLED)
        return self.get(conn, outbox_id)

    def _move(self, conn: Connection, outbox_id: int, new: OutboxStatus, **values: Any) -> None:
        # Guarded by the allowed source statuses, so a concurrent claim wins cleanly.
        result = conn.execute(
            update(t)
            .where(t.c.id == outbox_id, t.c.status.in_([s.value for s in sources_of(new)]))
            .where(t.c.status != OutboxStatus.SENDING.value)
            .values(status=new.value, hold=None, updated_at=utcnow(), **values)
        )
        if result.rowcount != 1:
            raise StateError(f"outbox email {outbox_id} changed status meanwhile; look again")


def _requeued(conn: Connection, result: Any) -> int:
    """Report the rows an UPDATE … RETURNING put back in the queue; returns how many."""
    rows = list(result)
    emit(conn, queued_again(rows))
    return len(rows)
