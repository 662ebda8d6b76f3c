"""Persistence of case types, cases, parties, attachments and history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from postroom.cases.models import AttachmentInfo, Case, CaseType, HistoryEntry, Party
from postroom.db import tables
from postroom.db.paging import Page, contains, ordered, paged
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.records import Change, upsert

SYSTEM = "postroom"
# A received message is attached as received-<id>.eml (names CaseService.attach keeps).
RECEIVED_PREFIX = "received-"


class CaseTypeStore:
    """Reads and writes :class:`CaseType` records."""

    def get(self, conn: Connection, class_name: str) -> CaseType:
        t = tables.case_types
        row = conn.execute(select(t).where(t.c.class_name == class_name)).first()
        if row is None:
            raise NotFoundError(f"no case type with class {class_name!r}")
        return _case_type(row)

    def list(self, conn: Connection) -> list[CaseType]:
        t = tables.case_types
        return [_case_type(r) for r in conn.execute(select(t).order_by(t.c.class_name))]

    def put(self, conn: Connection, case_type: CaseType) -> Change:
        t = tables.case_types
        values = {
            "class_name": case_type.class_name,
            "class_group": case_type.class_group,
            "label": case_type.label,
            "id_prefix": case_type.id_prefix,
            "definition": case_type.model_dump(
                mode="json",
                include={"parties", "steps", "fields", "subject_token", "inbound", "language"},
            ),
            "updated_at": utcnow(),
        }
        try:
            same: bool | None = self.get(conn, case_type.class_name) == case_type
        except NotFoundError:
            same = None
        return upsert(conn, t, key=t.c.class_name, same=same, values=values)

    def delete(self, conn: Connection, class_name: str) -> None:
        t = tables.case_types
        if conn.execute(delete(t).where(t.c.class_name == class_name)).rowcount == 0:
            raise NotFoundError(f"no case type with class {class_name!r}")


def _case_type(row: Any) -> CaseType:
    return CaseType.model_validate(
        {
            "class": row.class_name,
            "class_group": row.class_group,
            "label": row.label,
            "id_prefix": row.id_prefix,
            **row.definition,
        }
    )


def next_case_id(conn: Connection, prefix: str) -> str:
    """Allocate ``M-1``, ``M-2`` …; safe under concurrency (row lock / SQLite write lock)."""
    t = tables.id_counters
    result = conn.execute(
        update(t).where(t.c.prefix == prefix).values(last=t.c.last + 1).returning(t.c.last)
    ).first()
    if result is None:
        conn.execute(insert(t).values(prefix=prefix, last=1))
        number = 1
    else:
        number = int(result.last)
    separator = "" if prefix.endswith("-") else "-"
    return f"{prefix}{separator}{number}"


def insert_case(
    conn: Connection,
    *,
    case_id: str,
    case_type: str,
    status: str,
    created_by: str | None,
    data: dict[str, Any],
    parties: list[Party],
    now: datetime,
) -> None:
    conn.execute(
        insert(tables.cases).values(
            id=case_id,
            case_type=case_type,
            status=status,
            created_by=created_by,
            data=data,
            created_at=now,
            updated_at=now,
        )
    )
    if parties:
        conn.execute(
            insert(tables.case_parties),
            [{"case_id": case_id, **p.model_dump()} for p in parties],
        )


def set_case_status(conn: Connection, case_id: str, status: str) -> None:
    t = tables.cases
    conn.execute(update(t).where(t.c.id == case_id).values(status=status, updated_at=utcnow()))


def add_history(conn: Connection, case_id: str, *, actor: str, action: str, detail: str) -> None:
    conn.execute(
        insert(tables.case_history).values(
            case_id=case_id, at=utcnow(), actor=actor, action=action, detail=detail
        )
    )


def has_attachment(conn: Connection, case_id: str, name: str) -> bool:
    t = tables.case_attachments
    query = select(t.c.id).where(t.c.case_id == case_id, t.c.name == name)
    return conn.execute(query.limit(1)).first() is not None


def add_attachment(
    conn: Connection,
    case_id: str,
    *,
    name: str,
    content_type: str,
    content: bytes,
    outbox_id: int | None = None,
) -> int:
    result = conn.execute(
        insert(tables.case_attachments)
        .values(
            case_id=case_id,
            name=name,
            content_type=content_type,
            content=content,
            size=len(content),
            outbox_id=outbox_id,
            created_at=utcnow(),
        )
        .returning(tables.case_attachments.c.id)
    )
    return int(result.scalar_one())


def attachment_contents(conn: Connection, case_id: str) -> list[tuple[str, str, bytes]]:
    """(name, content type, bytes) of every file attached to the case, as a step's
    ``include_attachments`` sends them: the sent and received emails excluded (a
    customer's own message is not forwarded by a step)."""
    t = tables.case_attachments
    rows = conn.execute(
        select(t.c.name, t.c.content_type, t.c.content)
        .where(t.c.case_id == case_id, t.c.outbox_id.is_(None))
        .order_by(t.c.id)
    )
    return [
        (r.name, r.content_type, bytes(r.content))
        for r in rows
        if not (r.name.startswith(RECEIVED_PREFIX) and r.content_type == "message/rfc822")
    ]


def attachment_content(conn: Connection, case_id: str, name: str) -> tuple[str, bytes]:
    t = tables.case_attachments
    row = conn.execute(
        select(t.c.content_type, t.c.content)
        .where(t.c.case_id == case_id, t.c.name == name)
        .order_by(t.c.id.desc())
    ).first()
    if row is None:
        raise NotFoundError(f"case {case_id} has no attachment named {name!r}")
    return row.content_type, bytes(row.content)


def load_case(conn: Connection, case_id: str, *, details: bool = True) -> Case:
    row = conn.execute(select(tables.cases).where(tables.cases.c.id == case_id)).first()
    if row is None:
        raise NotFoundError(f"no case with id {case_id!r}")
    parties: list[Party] = []
    attachments: list[AttachmentInfo] = []
    history: list[HistoryEntry] = []
    p = tables.case_parties
    parties = [
        Party(
            role=r.role,
            address=r.address,
            name=r.name,
            operator_id=r.operator_id,
            language=r.language,
        )
        for r in conn.execute(select(p).where(p.c.case_id == case_id).order_by(p.c.role))
    ]
    if details:
        a = tables.case_attachments
        attachments = [
            AttachmentInfo.model_validate(dict(r._mapping))
            for r in conn.execute(
                select(a.c.id, a.c.name, a.c.content_type, a.c.size, a.c.created_at, a.c.outbox_id)
                .where(a.c.case_id == case_id)
                .order_by(a.c.id)
            )
        ]
        h = tables.case_history
        history = [
            HistoryEntry(at=r.at, actor=r.actor, action=r.action, detail=r.detail)
            for r in conn.execute(select(h).where(h.c.case_id == case_id).order_by(h.c.id))
        ]
    return Case(
        id=row.id,
        case_type=row.case_type,
        status=row.status,
        created_by=row.created_by,
        data=row.data,
        created_at=row.created_at,
        updated_at=row.updated_at,
        parties=parties,
        attachments=attachments,
        history=history,
    )


class CaseSort(StrEnum):
    """The columns a list of cases may be sorted by."""

    CREATED = "created"
    ID = "id"
    STATUS = "status"
    TYPE = "type"


@dataclass(frozen=True, slots=True)
class CaseQuery:
    """Text to find (in a case's id, status, type or a party's address), order and page."""

    text: str = ""
    sort: CaseSort = CaseSort.CREATED
    descending: bool = True
    page: int = 1
    page_size: int = 50


def _case_matching(text: str) -> ColumnElement[bool]:
    t, p = tables.cases, tables.case_parties
    needle = text.strip().lower()
    party = exists().where(p.c.case_id == t.c.id, contains(p.c.address, needle))
    return or_(
        contains(t.c.id, needle),
        contains(t.c.status, needle),
        contains(t.c.case_type, needle),
        party,
    )


def _case_filtered(query: CaseQuery, base: Select[Any]) -> Select[Any]:
    return base.where(_case_matching(query.text)) if query.text.strip() else base


def search_cases(conn: Connection, query: CaseQuery) -> Page[Case]:
    """The page of cases (without attachments and history) matching ``query``, and the total."""
    t = tables.cases
    column = {
        CaseSort.CREATED: t.c.created_at,
        CaseSort.ID: t.c.id,
        CaseSort.STATUS: t.c.status,
        CaseSort.TYPE: t.c.case_type,
    }[query.sort]
    return paged(
        conn,
        _case_filtered(query, select(func.count()).select_from(t)),
        listed=_case_filtered(query, select(t.c.id)).order_by(
            *ordered(column, t.c.id, descending=query.descending)
        ),
        page=query.page,
        page_size=query.page_size,
        item=lambda row: load_case(conn, row.id, details=False),
    )
