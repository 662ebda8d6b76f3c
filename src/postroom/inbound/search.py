"""Searching received mail for the triage list: sender, subject or Message-ID, filtered,
the messages awaiting an admin first, paged.

Works alike on SQLite and PostgreSQL (see :mod:`postroom.db.paging`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Row, Select, case, func, or_, select

from postroom.db import tables
from postroom.db.paging import Page, contains, filtered, paged
from postroom.inbound.models import InboundStatus, ReceivedMessage, ServerState

t = tables.inbound_messages
_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]
# Every column but the raw bytes: a page of 50 never loads 50 messages' bodies.
_COLUMNS = [c for c in t.c if c.name not in ("raw", "mailbox", "dedupe_key", "source_key")]


@dataclass(frozen=True, slots=True)
class InboundQuery:
    """What the admin asked for: text, filters and one page."""

    text: str = ""
    status: InboundStatus | None = None
    account: str | None = None
    case_id: str | None = None
    page: int = 1
    page_size: int = 50


def _matching(text: str) -> ColumnElement[bool]:
    needle = text.strip().lower()
    bare = needle.strip("<>")
    return or_(
        contains(t.c.subject, needle),
        contains(t.c.from_address, needle),
        contains(t.c.from_name, needle),
        contains(t.c.message_id, bare),
    )


def _filtered(query: InboundQuery, base: _S) -> _S:
    return filtered(
        base,
        t,
        matching=_matching(query.text) if query.text.strip() else None,
        status=None if query.status is None else query.status.value,
        account=query.account,
        case_id=query.case_id,
    )


def message_of(row: Row[Any]) -> ReceivedMessage:
    """A stored row as the view model (never its raw bytes)."""
    m = row._mapping
    return ReceivedMessage(
        id=m["id"],
        account=m["account"],
        folder=m["folder"],
        message_id=m["message_id"],
        in_reply_to=m["in_reply_to"],
        subject=m["subject"] or "",
        from_address=m["from_address"],
        from_name=m["from_name"] or "",
        to=list(m["recipients"] or []),
        sent_at=m["sent_at"],
        received_at=m["received_at"],
        size=m["size"],
        status=InboundStatus(m["status"]),
        reason=m["reason"],
        case_id=m["case_id"],
        text=m["text"] or "",
        defects=list(m["defects"] or []),
        server_state=ServerState(m["server_state"]),
        attachments=m["attachments"] or 0,
    )


def search_received(conn: Connection, query: InboundQuery) -> Page[ReceivedMessage]:
    """The page of received messages matching ``query``: unmatched ones first, then the
    newest; and the number matching in all."""
    waiting = case((t.c.status == InboundStatus.UNMATCHED.value, 0), else_=1)
    return paged(
        conn,
        _filtered(query, select(func.count()).select_from(t)),
        listed=_filtered(query, select(*_COLUMNS)).order_by(
            waiting, t.c.received_at.desc(), t.c.id.desc()
        ),
        page=query.page,
        page_size=query.page_size,
        item=message_of,
    )


def status_counts(conn: Connection) -> dict[str, int]:
    """How many received messages there are of each status."""
    rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status))
    return {str(status): int(count) for status, count in rows}
