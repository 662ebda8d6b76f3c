"""Claiming outbox rows under a lease, and putting them back in the queue.

Claiming is one atomic statement: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING …`` on PostgreSQL, and the same ``UPDATE … RETURNING`` under
SQLite's write lock, so no two live agents ever hold the same row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    or_,
    select,
    union_all,
    update,
)

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.events import EVENT_COLUMNS, email_event, queued_again
from postroom.outbox.models import ClaimedEmail, Recipient
from postroom.outbox.status import DUE, Hold, OutboxStatus, Priority, sources_of
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
    # Unpacked by position (the order of _CLAIM_COLUMNS): a claim reads hundreds of rows.
    (
        id_,
        message_id,
        case_id,
        account,
        subject,
        mail_from,
        recipients,
        message,
        attempts,
        created_at,
        expires_at,
        bounce_token,
    ) = row
    return ClaimedEmail(
        id=id_,
        message_id=message_id,
        case_id=case_id,
        account=account,
        subject=subject,
        mail_from=mail_from,
        recipients=tuple(Recipient.from_json(r) for r in recipients),
        message=message if type(message) is bytes else bytes(message),
        attempts=attempts,
        created_at=created_at,
        expires_at=expires_at,
        bounce_token=bounce_token,
    )


class Claims:
    """Leases on outbox rows: claim, renew, give back; expire and release waiting rows."""

    def claim(
        self, conn: Connection, *, owner: str, limit: int, lease: float, now: datetime | None = None
    ) -> list[ClaimedEmail]:
        """Claim up to ``limit`` due rows (or rows whose lease expired) for ``owner``."""
        now = now or utcnow()
        statement = _claim_statement(conn.dialect.name, limit)
        params = {
            "claim_now": now,
            "claim_owner": owner,
            "claim_until": now + timedelta(seconds=lease),
        }
        return _sorted(conn.execute(statement, params))

    def next_due(self, conn: Connection) -> datetime | None:
        """When a claim or the expiry sweep will next find a row (None: nothing waits).

        One read, no write lock: an idle agent asks this instead of claiming, so that
        polling an empty queue costs a read (on SQLite, not the database's one writer),
        and sleeps until the time it answers when notifications cover the rest.
        """
        found = [v for v in conn.execute(_next_due_statement()).one() if v is not None]
        return min(found) if found else None

    def expire_due(
        self, conn: Connection, *, now: datetime | None = None
    ) -> list[tuple[int, str | None, str]]:
        """Expire every waiting email whose ``expires_at`` has come: (id, case, subject)."""
        result = conn.execute(_expire_statement(), {"expire_now": now or utcnow()})
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
        statement = _lease(pick).values(
            lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease), updated_at=now
        )
        return _sorted(conn.execute(statement))

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


def _lease(pick: Any) -> Any:
    """``UPDATE … RETURNING`` that leases what ``pick`` selects; owner and times to add."""
    return (
        update(t)
        .where(t.c.id.in_(pick.scalar_subquery()), t.c.message.is_not(None))
        .values(status=OutboxStatus.SENDING.value, attempts=t.c.attempts + 1)
        .returning(*_CLAIM_COLUMNS)
    )


# Built once per dialect and batch size, with the time and owner as parameters: the
# statement's construction and cache key cost more than its execution on a small batch.
_CLAIMS: dict[tuple[str, int], Any] = {}


def _claim_statement(dialect: str, limit: int) -> Any:
    statement = _CLAIMS.get((dialect, limit))
    if statement is None:
        statement = _CLAIMS[(dialect, limit)] = _build_claim(dialect, limit)
    return statement


def _build_claim(dialect: str, limit: int) -> Any:
    now = bindparam("claim_now", type_=t.c.next_attempt_at.type)
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
        if dialect == "postgresql":
            branch = branch.with_for_update(skip_locked=True)
        branches.append(select(branch.subquery()))
    candidates = union_all(*branches).subquery()
    pick = (
        select(candidates.c.id)
        .order_by(candidates.c.priority, candidates.c.next_attempt_at, candidates.c.id)
        .limit(limit)
    )
    return _lease(pick).values(
        lease_owner=bindparam("claim_owner", type_=t.c.lease_owner.type),
        lease_expires_at=bindparam("claim_until", type_=t.c.lease_expires_at.type),
        updated_at=now,
    )


@functools.cache
def _next_due_statement() -> Any:
    """The earliest time per way of becoming due; each MIN is one seek in an index."""
    waiting = [s.value for s in sources_of(OutboxStatus.EXPIRED) if s != OutboxStatus.SENDING]
    firsts = [
        # Per status and priority: the claim index leads with both, then next_attempt_at.
        select(func.min(t.c.next_attempt_at))
        .where(t.c.status == status.value, t.c.priority == priority.rank)
        .scalar_subquery()
        for status in DUE
        for priority in Priority
    ]
    lapsing = select(func.min(t.c.lease_expires_at)).where(t.c.status == OutboxStatus.SENDING.value)
    expiring = [
        # expires_at IS NOT NULL matches the partial expiry index on PostgreSQL.
        select(func.min(t.c.expires_at))
        .where(t.c.status == w, t.c.expires_at.is_not(None))
        .scalar_subquery()
        for w in waiting
    ]
    return select(*firsts, lapsing.scalar_subquery(), *expiring)


@functools.cache
def _expire_statement() -> Any:
    """Expire the waiting rows whose time has come (run before every claim: built once)."""
    now = bindparam("expire_now", type_=t.c.expires_at.type)
    waiting = [s.value for s in sources_of(OutboxStatus.EXPIRED) if s != OutboxStatus.SENDING]
    return (
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


def _sorted(rows: Iterable[Any]) -> list[ClaimedEmail]:
    claimed = [_claimed(row) for row in rows]
    claimed.sort(key=lambda c: c.id)
    return claimed


def _requeued(conn: Connection, result: Any) -> int:
    """Report the rows an UPDATE … RETURNING put back in the queue; returns how many."""
    rows = list(result)
    emit(conn, queued_again(rows))
    if rows:
        announce(conn)
    return len(rows)
