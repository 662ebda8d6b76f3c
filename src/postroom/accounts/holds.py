"""Account holds: an account whose credentials were refused keeps its emails waiting.

A hold is runtime state, not part of the account record. Its emails are 'held' in
the outbox; at ``check_at`` they are queued again so the next attempt checks the
credentials, with a growing delay while they keep failing. Any delivery through the
account, or a change to it or its profile, lifts the hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from postroom.db import tables

t = tables.account_holds


@dataclass(frozen=True, slots=True)
class AccountHold:
    """Why an account is held, since when, and when its credentials are tried again."""

    account: str
    reason: str
    since: datetime
    check_at: datetime
    failures: int

    def active(self, now: datetime) -> bool:
        return now < self.check_at


def _hold(row: Any) -> AccountHold:
    return AccountHold(
        account=row.account,
        reason=row.reason,
        since=row.since,
        check_at=row.check_at,
        failures=row.failures,
    )


class HoldStore:
    """Reads and writes account holds."""

    def get(self, conn: Connection, account: str) -> AccountHold | None:
        row = conn.execute(select(t).where(t.c.account == account)).first()
        return None if row is None else _hold(row)

    def list(self, conn: Connection) -> list[AccountHold]:
        return [_hold(row) for row in conn.execute(select(t).order_by(t.c.account))]

    def hold(
        self,
        conn: Connection,
        account: str,
        *,
        reason: str,
        now: datetime,
        delay: Callable[[int], float],
    ) -> None:
        """Hold ``account`` (or extend its hold): the next check waits ``delay(failures)``."""
        current = self.get(conn, account)
        failures = (current.failures if current else 0) + 1
        values = {
            "account": account,
            "reason": reason,
            "since": current.since if current else now,
            "check_at": now + timedelta(seconds=delay(failures)),
            "failures": failures,
        }
        # One statement, so two agents holding the same account at once cannot collide.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(t).values(values)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[t.c.account],
                set_={
                    "reason": statement.excluded.reason,
                    "check_at": statement.excluded.check_at,
                    "failures": t.c.failures + 1,
                },
            )
        )

    def lift(self, conn: Connection, account: str) -> bool:
        """Remove the hold; ``True`` if there was one."""
        return bool(conn.execute(delete(t).where(t.c.account == account)).rowcount)

    def due(self, conn: Connection, now: datetime) -> Sequence[str]:
        """Accounts whose credentials are to be tried again."""
        query = select(t.c.account).where(t.c.check_at <= now).order_by(t.c.account)
        return list(conn.scalars(query))
