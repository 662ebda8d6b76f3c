"""Sent and failed emails per minute over a recent window, for the dashboard chart.

Sent emails count at their ``sent_at``; failed ones at their ``updated_at`` (the moment
they were given up on). Minutes are bucketed in SQL so the cost does not grow with the
rows fetched, and the result is zero-filled so every minute of the window is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.status import OutboxStatus

_KEY_FORMAT = "%Y-%m-%d %H:%M"
MAX_HOURS = 48


@dataclass(frozen=True, slots=True)
class MinuteActivity:
    """How many emails were sent and how many failed in one UTC minute."""

    minute: datetime
    sent: int
    failed: int


def _minute_key(conn: Connection, column: Any) -> Any:
    """A 'YYYY-MM-DD HH:MM' string of ``column`` in UTC, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        # timestamptz: convert to UTC before truncating, whatever the session time zone.
        utc = func.timezone("UTC", column)
        return func.to_char(func.date_trunc("minute", utc), "YYYY-MM-DD HH24:MI")
    # SQLite keeps naive UTC text (see UTCDateTime): strftime reads it as UTC.
    return func.strftime(_KEY_FORMAT, column)


def _counts(conn: Connection, column: Any, status: OutboxStatus, since: datetime) -> dict[str, int]:
    t = tables.outbox
    key = _minute_key(conn, column).label("minute")
    query = (
        select(key, func.count())
        .where(t.c.status == status.value, column.is_not(None), column >= since)
        .group_by(key)
    )
    return {str(minute): int(n) for minute, n in conn.execute(query)}


def activity(
    conn: Connection, *, hours: float = 3, now: datetime | None = None
) -> list[MinuteActivity]:
    """One entry per minute of the last ``hours`` (at most 48), oldest first."""
    hours = min(max(hours, 1 / 60), MAX_HOURS)
    now = (now or utcnow()).astimezone(UTC).replace(second=0, microsecond=0)
    minutes = round(hours * 60)
    first = now - timedelta(minutes=minutes - 1)
    t = tables.outbox
    sent = _counts(conn, t.c.sent_at, OutboxStatus.SENT, first)
    failed = _counts(conn, t.c.updated_at, OutboxStatus.FAILED, first)
    result = []
    for i in range(minutes):
        minute = first + timedelta(minutes=i)
        key = minute.strftime(_KEY_FORMAT)
        result.append(MinuteActivity(minute, sent.get(key, 0), failed.get(key, 0)))
    return result
