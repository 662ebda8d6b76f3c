"""Reads and writes of received messages (``inbound_messages``)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError, StateError
from postroom.inbound.models import (
    InboundStatus,
    MailboxRef,
    ReceivedMessage,
    ServerState,
    check_transition,
)

t = tables.inbound_messages
# What a view of a received message reads: everything but its bytes.
VIEW_COLUMNS = [c for c in t.c if c.name != "raw"]
MAX_LIST = 1000
# Column widths (PostgreSQL enforces them): what comes from mail is cut to fit.
_WIDTHS = {"message_id": 998, "from_address": 320, "from_name": 255, "source_key": 255}


@dataclass(frozen=True, slots=True)
class NewReceived:
    """A received message as it is first written."""

    mailbox: MailboxRef
    dedupe_key: str
    source_key: str
    validity: str | None
    size: int
    raw: bytes | None
    status: InboundStatus
    reason: str
    server_state: ServerState
    message_id: str | None = None
    in_reply_to: str | None = None
    subject: str = ""
    from_address: str | None = None
    from_name: str = ""
    recipients: Sequence[str] = ()
    sent_at: datetime | None = None
    text: str = ""
    defects: Sequence[str] = ()
    attachments: int = 0
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class Existing:
    """What the dedupe lookup finds of a message already received."""

    id: int
    status: InboundStatus
    case_id: str | None
    source_key: str | None
    server_state: ServerState


@dataclass(frozen=True, slots=True)
class Twin:
    """The first copy of a message that another mailbox read too."""

    id: int
    mailbox: str
    status: InboundStatus
    case_id: str | None


# Without a case, a first copy still decides its twins' place: waiting in triage once.
_TRIAGED = (InboundStatus.UNMATCHED, InboundStatus.DISMISSED)


def received_view(row: Any) -> ReceivedMessage:
    """A stored row (read with ``VIEW_COLUMNS``) as the view model."""
    return ReceivedMessage(
        id=row.id,
        account=row.account,
        folder=row.folder,
        message_id=row.message_id,
        in_reply_to=row.in_reply_to,
        subject=row.subject,
        from_address=row.from_address,
        from_name=row.from_name,
        to=list(row.recipients or []),
        sent_at=row.sent_at,
        received_at=row.received_at,
        size=row.size,
        status=InboundStatus(row.status),
        reason=row.reason,
        case_id=row.case_id,
        text=row.text,
        defects=list(row.defects or []),
        server_state=ServerState(row.server_state),
        attachments=row.attachments,
    )


def _cut(name: str, value: str | None) -> str | None:
    width = _WIDTHS.get(name)
    return value[:width] if value is not None and width is not None else value


class InboundStore:
    """All reads and writes of received messages."""

    def find(self, conn: Connection, mailbox: MailboxRef, dedupe_key: str) -> Existing | None:
        """The message of this mailbox with this dedupe key, if it was received already."""
        row = conn.execute(
            select(t.c.id, t.c.status, t.c.case_id, t.c.source_key, t.c.server_state).where(
                t.c.mailbox == mailbox.key, t.c.dedupe_key == dedupe_key
            )
        ).first()
        if row is None:
            return None
        return Existing(
            id=row.id,
            status=InboundStatus(row.status),
            case_id=row.case_id,
            source_key=row.source_key,
            server_state=ServerState(row.server_state),
        )

    def insert(self, conn: Connection, new: NewReceived) -> int:
        """Write the message; a duplicate hits the unique (mailbox, dedupe_key) index."""
        now = utcnow()
        result = conn.execute(
            insert(t)
            .values(
                mailbox=new.mailbox.key,
                account=new.mailbox.account,
                folder=new.mailbox.folder,
                dedupe_key=new.dedupe_key,
                source_key=new.source_key,
                validity=new.validity,
                message_id=_cut("message_id", new.message_id),
                in_reply_to=new.in_reply_to,
                subject=new.subject,
                from_address=_cut("from_address", new.from_address),
                from_name=_cut("from_name", new.from_name) or "",
                recipients=list(new.recipients),
                sent_at=new.sent_at,
                received_at=now,
                size=new.size,
                raw=new.raw,
                text=new.text,
                status=new.status.value,
                reason=new.reason,
                case_id=new.case_id,
                defects=list(new.defects),
                attachments=new.attachments,
                server_state=new.server_state.value,
                updated_at=now,
            )
            .returning(t.c.id)
        )
        return int(result.scalar_one())

    def track(
        self, conn: Connection, message_id: int, *, source_key: str, validity: str | None
    ) -> None:
        """Point a settled message at another copy of it on the server, to settle that too."""
        conn.execute(
            update(t)
            .where(t.c.id == message_id, t.c.server_state == ServerState.DONE.value)
            .values(
                source_key=source_key,
                validity=validity,
                server_state=ServerState.PENDING.value,
                updated_at=utcnow(),
            )
        )

    def route(
        self,
        conn: Connection,
        message_id: int,
        *,
        status: InboundStatus,
        reason: str,
        case_id: str | None,
    ) -> None:
        """Record where a message went (routing, or an admin's triage)."""
        conn.execute(
            update(t)
            .where(t.c.id == message_id)
            .values(status=status.value, reason=reason, case_id=case_id, updated_at=utcnow())
        )

    def twin(
        self,
        conn: Connection,
        *,
        message_id: str | None,
        dedupe_key: str,
        other_than: MailboxRef,
    ) -> Twin | None:
        """The same message read from another mailbox, if routing or an admin placed it:
        one on a case first, else the first in triage or dismissed.

        By Message-ID when it has one, else by its bytes (the dedupe key): mail without
        a Message-ID is rare, and the message_id index finds those rows alone.
        """
        same = (
            t.c.message_id == _cut("message_id", message_id)
            if message_id
            else (t.c.message_id.is_(None) & (t.c.dedupe_key == dedupe_key))
        )
        row = conn.execute(
            select(t.c.id, t.c.mailbox, t.c.status, t.c.case_id)
            .where(
                same,
                t.c.mailbox != other_than.key,
                t.c.case_id.is_not(None) | t.c.status.in_([s.value for s in _TRIAGED]),
            )
            .order_by(t.c.case_id.is_(None), t.c.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        return Twin(row.id, row.mailbox, InboundStatus(row.status), row.case_id)

    def pending_keys(
        self, conn: Connection, mailbox: MailboxRef, validity: str | None
    ) -> builtins.list[tuple[int, str]]:
        """(id, server key) of committed messages still to flag, move or delete there."""
        query = select(t.c.id, t.c.source_key).where(
            t.c.mailbox == mailbox.key,
            t.c.server_state == ServerState.PENDING.value,
            t.c.source_key.is_not(None),
        )
        query = query.where(
            t.c.validity.is_(None) if validity is None else t.c.validity == validity
        )
        return [(r.id, r.source_key) for r in conn.execute(query.order_by(t.c.id))]

    def mark_settled(self, conn: Connection, ids: Sequence[int]) -> int:
        """Note that these messages were flagged, moved or deleted on the server."""
        if not ids:
            return 0
        result = conn.execute(
            update(t)
            .where(t.c.id.in_(list(ids)), t.c.server_state == ServerState.PENDING.value)
            .values(server_state=ServerState.DONE.value, updated_at=utcnow())
        )
        return result.rowcount

    def get(self, conn: Connection, message_id: int) -> ReceivedMessage:
        row = conn.execute(select(*VIEW_COLUMNS).where(t.c.id == message_id)).first()
        if row is None:
            raise NotFoundError(f"no received message #{message_id}")
        return received_view(row)

    def list(
        self,
        conn: Connection,
        *,
        case_id: str | None = None,
        status: InboundStatus | None = None,
        account: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReceivedMessage]:
        """Received messages, newest first."""
        query = select(*VIEW_COLUMNS).order_by(t.c.id.desc())
        if case_id is not None:
            query = query.where(t.c.case_id == case_id)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if account is not None:
            query = query.where(t.c.account == account)
        limit, offset = max(0, min(limit, MAX_LIST)), max(0, offset)
        return [received_view(r) for r in conn.execute(query.limit(limit).offset(offset))]

    def for_case(self, conn: Connection, case_id: str) -> builtins.list[ReceivedMessage]:
        """Every message of a case, oldest first (its conversation)."""
        query = select(*VIEW_COLUMNS).where(t.c.case_id == case_id).order_by(t.c.id)
        return [received_view(r) for r in conn.execute(query)]

    def raw(self, conn: Connection, message_id: int) -> bytes:
        row = conn.execute(select(t.c.raw).where(t.c.id == message_id)).first()
        if row is None:
            raise NotFoundError(f"no received message #{message_id}")
        if row.raw is None:
            raise StateError(
                f"received message #{message_id} was too large to read: it is left on the server"
            )
        return bytes(row.raw)

    def set_status(
        self,
        conn: Connection,
        message_id: int,
        status: InboundStatus,
        *,
        reason: str,
        case_id: str | None = None,
    ) -> ReceivedMessage:
        """An admin's change (attach, open a case, dismiss), if the status allows it."""
        current = self.get(conn, message_id)
        check_transition(current.status, status, message_id=message_id, case_id=current.case_id)
        result = conn.execute(
            update(t)
            .where(t.c.id == message_id, t.c.status == current.status.value)
            .values(
                status=status.value,
                reason=reason,
                case_id=case_id if case_id is not None else current.case_id,
                updated_at=utcnow(),
            )
        )
        if result.rowcount != 1:
            raise StateError(f"received message #{message_id} changed meanwhile; look again")
        return self.get(conn, message_id)
