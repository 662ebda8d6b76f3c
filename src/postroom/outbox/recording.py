"""Writing attempts' outcomes to the rows their agent still holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, bindparam, func, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.models import Outcome, Recipient, RecipientState, keep_reported
from postroom.outbox.status import OutboxStatus

t = tables.outbox


class Recording:
    """Outcomes written under the lease, keeping what delivery reports said meanwhile."""

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
