"""Each mailbox's row in ``inbound_mailboxes``: its lease, its cursor, its last poll.

Exactly one listener reads a mailbox at a time, across every agent on every host: the
one that holds the row's lease. Leases are taken, renewed and given back with
conditional UPDATEs, so two agents racing for one mailbox cannot both win. The cursor is
saved only inside an ingest transaction that also checks the lease is still ours
(fencing): a listener whose lease was taken over rolls back instead of writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import StateError
from postroom.inbound.models import Cursor, MailboxRef

t = tables.inbound_mailboxes
# What is kept of a mailbox's last error: one line an operator reads, not a dump.
MAX_ERROR = 500


class LeaseLostError(StateError):
    """Another listener holds the mailbox now: this one must stop writing for it."""


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """A mailbox as operators see it: who reads it, how far, and how it went last."""

    mailbox: str
    account: str
    folder: str
    validity: str | None
    position: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_poll_at: datetime | None
    last_error: str | None


def ensure(conn: Connection, ref: MailboxRef) -> None:
    """Create the mailbox's row unless it exists (a concurrent writer's row stands)."""
    key = ref.key
    if conn.execute(select(t.c.mailbox).where(t.c.mailbox == key)).first() is not None:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                insert(t).values(
                    mailbox=key, account=ref.account, folder=ref.folder, updated_at=utcnow()
                )
            )
    except IntegrityError:
        pass  # another agent made it first: the same row


def acquire(
    conn: Connection,
    ref: MailboxRef,
    *,
    owner: str,
    lease: float,
    now: datetime | None = None,
) -> bool:
    """Take (or keep) the mailbox's lease for ``owner``; ``False`` when a live one holds it."""
    now = now or utcnow()
    ensure(conn, ref)
    free = or_(
        t.c.lease_owner.is_(None),
        t.c.lease_owner == owner,
        t.c.lease_expires_at.is_(None),
        t.c.lease_expires_at < now,
    )
    result = conn.execute(
        update(t)
        .where(and_(t.c.mailbox == ref.key, free))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease), updated_at=now)
    )
    return bool(result.rowcount)


def renew(conn: Connection, mailbox: str, *, owner: str, lease: float) -> bool:
    """Extend ``owner``'s lease; ``False`` when it is no longer ``owner``'s."""
    now = utcnow()
    result = conn.execute(
        update(t)
        .where(t.c.mailbox == mailbox, t.c.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=lease))
    )
    return bool(result.rowcount)


def release(conn: Connection, mailbox: str, *, owner: str) -> bool:
    """Give the lease back (a stopping listener): another may take it at once."""
    result = conn.execute(
        update(t)
        .where(t.c.mailbox == mailbox, t.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow())
    )
    return bool(result.rowcount)


def check_lease(
    conn: Connection,
    mailbox: str,
    owner: str,
    *,
    cursor: Cursor | None = None,
    lease: float | None = None,
) -> None:
    """Raise :class:`LeaseLostError` unless ``owner`` holds the lease; save ``cursor``.

    Run inside an ingest transaction. The owner changes only through :func:`acquire`,
    which (a conditional UPDATE of the same row) waits for this transaction's row lock
    and then sees the lease renewed: either this write commits and the lease was ours
    throughout, or it fails and the whole transaction rolls back. A lapsed lease nobody
    took is still ours.
    """
    now = utcnow()
    values: dict[str, object] = {"updated_at": now}
    if cursor is not None:
        values.update(validity=cursor.validity, position=cursor.position)
    if lease is not None:
        values["lease_expires_at"] = now + timedelta(seconds=lease)
    result = conn.execute(
        update(t).where(t.c.mailbox == mailbox, t.c.lease_owner == owner).values(**values)
    )
    if not result.rowcount:
        raise LeaseLostError(f"mailbox {mailbox}: another listener holds it now")


def load_cursor(conn: Connection, mailbox: str) -> Cursor:
    """How far the mailbox has been read (an empty cursor for a new one)."""
    row = conn.execute(select(t.c.validity, t.c.position).where(t.c.mailbox == mailbox)).first()
    return Cursor() if row is None else Cursor(validity=row.validity, position=row.position)


def save_cursor(conn: Connection, mailbox: str, cursor: Cursor, *, owner: str) -> None:
    """Save the cursor, fenced by ``owner``'s lease (see :func:`check_lease`)."""
    check_lease(conn, mailbox, owner, cursor=cursor)


def note_poll(
    conn: Connection, mailbox: str, *, error: str | None, at: datetime | None = None
) -> None:
    """Record a round's time and its error (``None`` clears it) for operators."""
    now = at or utcnow()
    conn.execute(
        update(t)
        .where(t.c.mailbox == mailbox)
        .values(
            last_poll_at=now,
            last_error=None if error is None else error[:MAX_ERROR],
            updated_at=now,
        )
    )


def info(conn: Connection, mailbox: str | None = None) -> list[MailboxInfo]:
    """Every mailbox's row (or one), by key."""
    query = select(t).order_by(t.c.mailbox)
    if mailbox is not None:
        query = query.where(t.c.mailbox == mailbox)
    return [
        MailboxInfo(
            mailbox=r.mailbox,
            account=r.account,
            folder=r.folder,
            validity=r.validity,
            position=r.position,
            lease_owner=r.lease_owner,
            lease_expires_at=r.lease_expires_at,
            last_poll_at=r.last_poll_at,
            last_error=r.last_error,
        )
        for r in conn.execute(query)
    ]


def as_read_now(rows: list[MailboxInfo], folders: Mapping[str, str | None]) -> list[MailboxInfo]:
    """``rows`` with those no account reads any more said so in place of their last error.

    ``folders`` maps each account to the folder it reads (``None``: no inbound
    settings). A row
    stays (its cursor is kept, should the folder be read again) but an old error of a
    mailbox nobody reads is not news: it says why it is not read instead.
    """
    shown = []
    for row in rows:
        folder = folders.get(row.account)
        if row.account not in folders:
            why = f"not read any more: account {row.account} no longer exists"
        elif folder is None:
            why = f"not read any more: account {row.account} has no inbound settings now"
        elif folder != row.folder:
            why = f"not read any more: account {row.account} reads folder {folder} now"
        else:
            shown.append(row)
            continue
        shown.append(replace(row, last_error=why))
    return shown
