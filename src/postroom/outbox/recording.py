"""Writing attempts' outcomes to the rows their agent still holds.

A batch's outcomes, whatever their kinds, are written without SQLAlchemy's per-row
parameter processing, which cost more than the database's work: on PostgreSQL one
``UPDATE … FROM json_to_recordset(…) RETURNING id`` (the rows travel as one JSON
parameter, and what it returns are the rows the owner still held); on SQLite, which
reads a JSON parameter more slowly than it binds values, one read of the held rows and
one ``executemany`` of plain tuples, both under the write lock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, select, text

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.models import Outcome, Recipient, RecipientState, keep_reported
from postroom.outbox.status import OutboxStatus

t = tables.outbox

_SENDING = OutboxStatus.SENDING.value
# json, not jsonb: the recipients' text is stored as it was written.
_POSTGRES = text(
    """
    UPDATE outbox SET
        status = v.status, hold = v.hold, attempts = outbox.attempts - v.refund,
        recipients = v.recipients, next_attempt_at = v.next, lease_owner = NULL,
        lease_expires_at = NULL, last_code = v.code, last_enhanced = v.enhanced,
        last_error = v.error, updated_at = :now, sent_at = COALESCE(v.sent_at, outbox.sent_at)
    FROM json_to_recordset(CAST(:batch AS json)) AS v(
        id bigint, status text, hold text, refund int, recipients json, next timestamptz,
        code int, enhanced text, error text, sent_at timestamptz)
    WHERE outbox.id = v.id AND outbox.lease_owner = :owner AND outbox.status = :sending
    RETURNING outbox.id
    """
).bindparams(bindparam("now", type_=t.c.updated_at.type), bindparam("sending", value=_SENDING))
_SQLITE_HELD = (
    "SELECT id FROM outbox WHERE id IN (SELECT value FROM json_each(?)) "
    f"AND lease_owner = ? AND status = '{_SENDING}'"
)
_SQLITE_UPDATE = (
    "UPDATE outbox SET status = ?, hold = ?, attempts = attempts - ?, recipients = ?, "
    "next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, last_code = ?, "
    "last_enhanced = ?, last_error = ?, updated_at = ?, sent_at = COALESCE(?, sent_at) "
    "WHERE id = ? AND lease_owner = ?"
)


class Recording:
    """Outcomes written under the lease, keeping what delivery reports said meanwhile."""

    def record(self, conn: Connection, outcome: Outcome, *, owner: str) -> bool:
        """Write an attempt's outcome if ``owner`` still holds the lease."""
        return outcome.id in self.record_many(conn, [outcome], owner=owner)

    def record_many(self, conn: Connection, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
        """Write many outcomes at once; returns the ids ``owner`` still held.

        The lease is checked under the lock the write holds (PostgreSQL's row locks,
        SQLite's write lock), so the answer cannot change before the write.
        """
        if not outcomes:
            return set()
        # The first outcome of a row wins, as it always did: writing it ends the lease.
        unique = list({o.id: o for o in reversed(outcomes)}.values())[::-1]
        unique = self._with_reports(conn, unique, owner=owner)
        if conn.dialect.name == "postgresql":
            return _record_postgres(conn, unique, owner=owner)
        return _record_sqlite(conn, unique, owner=owner)

    def _with_reports(
        self, conn: Connection, outcomes: list[Outcome], *, owner: str
    ) -> list[Outcome]:
        """Keep what delivery reports said meanwhile about recipients accepted earlier.

        A row sent to some recipients and retried for others can get a bounce for an
        accepted one while an agent holds it; that agent's outcome still says "accepted".
        Only such rows are read again, locked first so that no report lands in between.
        """
        earlier = [
            o.id
            for o in outcomes
            if not o.newly_delivered
            and any(r.state is RecipientState.ACCEPTED for r in o.recipients)
        ]
        if not earlier:
            return outcomes
        query = select(t.c.id, t.c.recipients).where(
            t.c.id.in_(earlier),
            t.c.lease_owner == owner,
            t.c.status == OutboxStatus.SENDING.value,
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        stored = {
            row.id: [Recipient.from_json(r) for r in row.recipients] for row in conn.execute(query)
        }
        return [
            replace(o, recipients=keep_reported(o.recipients, stored[o.id]))
            if o.id in stored
            else o
            for o in outcomes
        ]


def _record_postgres(conn: Connection, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
    batch = [
        {
            "id": o.id,
            "status": o.status.value,
            "hold": o.hold.value if o.hold else None,
            "refund": int(o.refund),
            "recipients": [r.to_json() for r in o.recipients],
            "next": o.next_attempt_at.astimezone(UTC).isoformat(),
            "code": o.last_code,
            "enhanced": o.last_enhanced,
            "error": o.last_error,
            "sent_at": o.sent_at.astimezone(UTC).isoformat() if o.sent_at else None,
        }
        for o in outcomes
    ]
    params = {"batch": json.dumps(batch), "owner": owner, "now": utcnow()}
    return {row[0] for row in conn.execute(_POSTGRES, params)}


def _record_sqlite(conn: Connection, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
    ids = json.dumps([o.id for o in outcomes])
    held = {row[0] for row in conn.exec_driver_sql(_SQLITE_HELD, (ids, owner))}
    now = sqlite_time(utcnow())
    rows = [
        (
            o.status.value,
            o.hold.value if o.hold else None,
            int(o.refund),
            json.dumps([r.to_json() for r in o.recipients]),
            sqlite_time(o.next_attempt_at),
            o.last_code,
            o.last_enhanced,
            o.last_error,
            now,
            sqlite_time(o.sent_at) if o.sent_at is not None else None,
            o.id,
            owner,
        )
        for o in outcomes
        if o.id in held
    ]
    if rows:
        conn.exec_driver_sql(_SQLITE_UPDATE, rows)
    return held


def sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite: naive UTC text, six fractional digits.

    One C call instead of the dialect's formatting; a test holds the two equal.
    """
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
