"""Searching the outbox: free text over subject, recipients and Message-ID, sorted and paged.

Works alike on SQLite and PostgreSQL: matching is a case-insensitive ``LIKE`` whose
wildcards in the user's text are escaped, so ``50%`` or ``a_b`` match themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import ColumnElement, Connection, Select, String, cast, func, or_, select

from postroom.db import tables
from postroom.outbox.models import OutboxEntry
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import _ENTRY_COLUMNS, _entry

t = tables.outbox
_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]


class SortKey(StrEnum):
    """The columns an outbox list may be sorted by."""

    CREATED = "created"
    ID = "id"
    STATUS = "status"
    SUBJECT = "subject"
    ACCOUNT = "account"
    UPDATED = "updated"


_SORT_COLUMNS: dict[SortKey, ColumnElement[object]] = {
    SortKey.CREATED: t.c.created_at,
    SortKey.ID: t.c.id,
    SortKey.STATUS: t.c.status,
    SortKey.SUBJECT: func.lower(t.c.subject),
    SortKey.ACCOUNT: func.lower(func.coalesce(t.c.account, "")),
    SortKey.UPDATED: t.c.updated_at,
}


@dataclass(frozen=True, slots=True)
class OutboxQuery:
    """What the user asked for: text, filters, order and one page of results."""

    text: str = ""
    status: OutboxStatus | None = None
    account: str | None = None
    case_id: str | None = None
    sort: SortKey = SortKey.CREATED
    descending: bool = True
    page: int = 1
    page_size: int = 50


@dataclass(frozen=True, slots=True)
class OutboxPage:
    """One page of matching entries and how many match in all."""

    entries: list[OutboxEntry]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max((self.total + self.page_size - 1) // self.page_size, 1)

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _matching(text: str) -> ColumnElement[bool]:
    needle = text.strip().lower()
    # A pasted Message-ID usually comes with its angle brackets; stored ones have them too,
    # but matching without them finds the id either way.
    bare = needle.strip("<>")
    return or_(
        func.lower(t.c.subject).contains(needle, autoescape=True),
        # The recipients are JSON; their text holds every address, quoted.
        func.lower(cast(t.c.recipients, String)).contains(bare, autoescape=True),
        func.lower(t.c.message_id).contains(bare, autoescape=True),
    )


def _filtered(query: OutboxQuery, base: _S) -> _S:
    if query.text.strip():
        base = base.where(_matching(query.text))
    if query.status is not None:
        base = base.where(t.c.status == query.status.value)
    if query.account is not None:
        base = base.where(t.c.account == query.account)
    if query.case_id is not None:
        base = base.where(t.c.case_id == query.case_id)
    return base


def search_outbox(conn: Connection, query: OutboxQuery) -> OutboxPage:
    """The page of outbox entries matching ``query``, and the number matching in all."""
    counted = _filtered(query, select(func.count()).select_from(t))
    total: int = conn.execute(counted).scalar_one()
    size = max(query.page_size, 1)
    pages = max((total + size - 1) // size, 1)
    page = min(max(query.page, 1), pages)
    column = _SORT_COLUMNS[query.sort]
    order = column.desc() if query.descending else column.asc()
    # id breaks ties so paging is stable when many rows share a status or a subject.
    tiebreak = t.c.id.desc() if query.descending else t.c.id.asc()
    rows = conn.execute(
        _filtered(query, select(*_ENTRY_COLUMNS))
        .order_by(order, tiebreak)
        .limit(size)
        .offset((page - 1) * size)
    )
    return OutboxPage(entries=[_entry(r) for r in rows], total=total, page=page, page_size=size)
