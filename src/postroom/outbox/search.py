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
from postroom.db.paging import Page, contains, filtered, ordered, paged
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
    # The emails rendered from a correspondence, or from one version of it.
    correspondence: str | None = None
    version: int | None = None
    sort: SortKey = SortKey.CREATED
    descending: bool = True
    page: int = 1
    page_size: int = 50


def _matching(text: str) -> ColumnElement[bool]:
    needle = text.strip().lower()
    # A pasted Message-ID usually comes with its angle brackets; stored ones have them too,
    # but matching without them finds the id either way.
    bare = needle.strip("<>")
    return or_(
        contains(t.c.subject, needle),
        # The recipients are JSON; their text holds every address, quoted.
        contains(cast(t.c.recipients, String), bare),
        contains(t.c.message_id, bare),
    )


def _filtered(query: OutboxQuery, base: _S) -> _S:
    return filtered(
        base,
        t,
        matching=_matching(query.text) if query.text.strip() else None,
        status=None if query.status is None else query.status.value,
        account=query.account,
        case_id=query.case_id,
        correspondence=query.correspondence,
        correspondence_version=query.version,
    )


def search_outbox(conn: Connection, query: OutboxQuery) -> Page[OutboxEntry]:
    """The page of outbox entries matching ``query``, and the number matching in all."""
    # id breaks ties so paging is stable when many rows share a status or a subject.
    order = ordered(_SORT_COLUMNS[query.sort], t.c.id, descending=query.descending)
    return paged(
        conn,
        _filtered(query, select(func.count()).select_from(t)),
        listed=_filtered(query, select(*_ENTRY_COLUMNS)).order_by(*order),
        page=query.page,
        page_size=query.page_size,
        item=_entry,
    )


def outbox_window(
    conn: Connection, query: OutboxQuery, *, limit: int, offset: int
) -> list[OutboxEntry]:
    """Up to ``limit`` entries matching ``query`` after skipping ``offset``, in its order."""
    order = ordered(_SORT_COLUMNS[query.sort], t.c.id, descending=query.descending)
    listed = _filtered(query, select(*_ENTRY_COLUMNS)).order_by(*order).limit(limit).offset(offset)
    return [_entry(row) for row in conn.execute(listed)]
