"""Searching received mail for the triage list: sender, subject or Message-ID, filtered,
the messages awaiting an admin first, paged.

Works alike on SQLite and PostgreSQL (see :mod:`postroom.db.paging`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import ColumnElement, Connection, Select, case, func, or_, select

from postroom.db import tables
from postroom.db.paging import Page, contains, filtered, paged
from postroom.inbound.models import InboundStatus, ReceivedMessage
from postroom.inbound.store import VIEW_COLUMNS, received_view

t = tables.inbound_messages
_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]
# Every column but the raw bytes: a page of 50 never loads 50 messages' bodies.


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


def search_received(conn: Connection, query: InboundQuery) -> Page[ReceivedMessage]:
    """The page of received messages matching ``query``: unmatched ones first, then the
    newest; and the number matching in all."""
    waiting = case((t.c.status == InboundStatus.UNMATCHED.value, 0), else_=1)
    return paged(
        conn,
        _filtered(query, select(func.count()).select_from(t)),
        listed=_filtered(query, select(*VIEW_COLUMNS)).order_by(
            waiting, t.c.received_at.desc(), t.c.id.desc()
        ),
        page=query.page,
        page_size=query.page_size,
        item=received_view,
    )


def status_counts(conn: Connection) -> dict[str, int]:
    """How many received messages there are of each status."""
    rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status))
    return {str(status): int(count) for status, count in rows}
