"""Account limits shared by every agent, kept in the database so that they hold across hosts.

* Messages per minute: a fixed one-minute window per account (``account_budgets``);
  an agent takes from it, in the same transaction, as many messages as it will send.
* Connections: numbered slots per account (``account_slots``), leased like outbox rows.
  An agent opens as many connections as slots it holds, and gives them back (closing the
  connections) after each batch, so that an idle agent holds none.

Rows over a limit go back to the queue, uncounted, due when the limit allows: a limit
delays mail, it never fails it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Table, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from postroom.accounts.limits import Limits
from postroom.db import tables
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.store import OutboxStore

WINDOW = timedelta(minutes=1)
NO_SLOT_DELAY = timedelta(seconds=1)  # when every connection slot is taken, look again soon


def take_messages(
    conn: Connection, account: str, *, want: int, per_minute: int, now: datetime
) -> tuple[int, datetime]:
    """How many of ``want`` messages the account may send now, and when its window ends."""
    t = tables.account_budgets
    query = select(t.c.window_start, t.c.used).where(t.c.account == account)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        # Another agent may make it first: then theirs is used.
        _insert_if_absent(conn, t, account=account, window_start=now, used=0)
        row = conn.execute(query).one()
    start, used = row.window_start, row.used
    if now >= start + WINDOW:
        start, used = now, 0
    granted = max(0, min(want, per_minute - used))
    conn.execute(
        update(t).where(t.c.account == account).values(window_start=start, used=used + granted)
    )
    return granted, start + WINDOW


def acquire_slots(
    conn: Connection,
    account: str,
    *,
    owner: str,
    limit: int,
    want: int,
    lease: float,
    now: datetime,
) -> int:
    """Lease up to ``want`` of the account's ``limit`` slots for ``owner``; returns how many."""
    t = tables.account_slots
    until = now + timedelta(seconds=lease)
    held = 0
    for slot in range(limit):
        if held >= want:
            break
        # A slot is free when nobody holds it or its lease ran out (its agent died).
        taken = conn.execute(
            update(t)
            .where(
                t.c.account == account,
                t.c.slot == slot,
                or_(t.c.owner == owner, t.c.expires_at <= now),
            )
            .values(owner=owner, expires_at=until)
        ).rowcount
        if not taken:  # a new slot, unless a live agent holds it
            taken = _insert_if_absent(conn, t, account=account, slot=slot, owner=owner,
                                      expires_at=until)  # fmt: skip
        held += taken
    return held


def _insert_if_absent(conn: Connection, table: Table, **values: object) -> bool:
    """Insert the row unless its key exists (a concurrent writer's row stands)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def release_slots(conn: Connection, *, owner: str) -> None:
    t = tables.account_slots
    conn.execute(delete(t).where(t.c.owner == owner))


def renew_slots(conn: Connection, *, owner: str, lease: float, now: datetime) -> None:
    t = tables.account_slots
    conn.execute(
        update(t)
        .where(and_(t.c.owner == owner, t.c.expires_at > now))
        .values(expires_at=now + timedelta(seconds=lease))
    )


@dataclass
class Admission:
    """What a batch may send now: rows, connections per account, and rows put off."""

    rows: list[ClaimedEmail] = field(default_factory=list)
    connections: dict[str, int] = field(default_factory=dict)
    deferred: dict[datetime, list[int]] = field(default_factory=lambda: defaultdict(list))


def admit(
    conn: Connection,
    rows: Sequence[ClaimedEmail],
    *,
    outbox: OutboxStore,
    limits_of: Callable[[str], Limits],
    owner: str,
    connections_per_account: int,
    lease: float,
    now: datetime,
) -> Admission:
    """Apply each account's limits to a claimed batch, in the caller's transaction.

    The rows a limit puts off go back to the outbox here, due when the limit allows.
    """
    by_account: dict[str, list[ClaimedEmail]] = defaultdict(list)
    for row in rows:
        by_account[row.account].append(row)
    admission = Admission()
    for account, account_rows in by_account.items():
        limits = limits_of(account)
        allowed = account_rows
        # Slots first: a batch that gets no connection must not spend the minute's budget.
        if limits.max_connections is not None:
            want = min(connections_per_account, len(allowed))
            held = acquire_slots(
                conn, account, owner=owner, limit=limits.max_connections, want=want,
                lease=lease, now=now,
            )  # fmt: skip
            if held == 0:
                admission.deferred[now + NO_SLOT_DELAY].extend(r.id for r in allowed)
                continue
            admission.connections[account] = held
        if limits.messages_per_minute is not None:
            granted, window_end = take_messages(
                conn, account, want=len(allowed), per_minute=limits.messages_per_minute, now=now
            )
            admission.deferred[window_end].extend(r.id for r in allowed[granted:])
            allowed = allowed[:granted]
        admission.rows.extend(allowed)
    for until, ids in admission.deferred.items():
        if ids:
            outbox.defer(conn, ids, owner=owner, until=until)
    return admission
