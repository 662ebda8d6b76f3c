"""Claiming outbox rows under a lease, and putting them back in the queue.

Claiming is one atomic statement: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING …`` on PostgreSQL, and the same ``UPDATE … RETURNING`` under
SQLite's write lock, so no two live agents ever hold the same row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, union_all, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.events import EVENT_COLUMNS, email_event, queued_again
from postroom.outbox.models import ClaimedEmail, Recipient
from postroom.outbox.status import DUE, Hold, OutboxStatus, sources_of
from postroom.outbox.wakeup import announce
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


class Claims:
    """Leases on outbox rows: claim, renew, give back; expire and release waiting rows."""

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
            .returning(*EVENT_COLUMNS)
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
            .returning(*EVENT_COLUMNS)
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
            .returning(*EVENT_COLUMNS)
        )
        return _requeued(conn, result)


def _requeued(conn: Connection, result: Any) -> int:
    """Report the rows an UPDATE … RETURNING put back in the queue; returns how many."""
    rows = list(result)
    emit(conn, queued_again(rows))
    if rows:
        announce(conn)
    return len(rows)
