"""What a ``send`` token may see: the cases and emails it created, and the emails of its cases."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select

from postroom.db import tables
from postroom.db.engine import reading
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.identity import ApiToken, Scope
from postroom.outbox import OutboxEntry


def record_owner(conn: Connection, *, token_id: str, kind: str, ident: str) -> None:
    """Inside the creating transaction: remember that this token created the resource."""
    conn.execute(
        tables.token_resources.insert().values(
            token_id=token_id, kind=kind, resource_id=ident, created_at=utcnow()
        )
    )


def _owns(conn: Connection, *, token_id: str, kind: str, ident: str) -> bool:
    t = tables.token_resources
    query = select(t.c.kind).where(
        t.c.token_id == token_id, t.c.kind == kind, t.c.resource_id == ident
    )
    return conn.execute(query).first() is not None


def _hidden(what: str) -> NotFoundError:
    # 404 rather than 403: another client's case ids are not this client's business.
    return NotFoundError(f"no {what} (or not one this token created)")


def check_case(engine: Engine, token: ApiToken, case_id: str) -> None:
    if token.allows(Scope.ADMIN):
        return
    with reading(engine) as conn:
        if not _owns(conn, token_id=token.id, kind="case", ident=case_id):
            raise _hidden(f"case with id {case_id!r}")


def check_email(engine: Engine, token: ApiToken, entry: OutboxEntry) -> None:
    if token.allows(Scope.ADMIN):
        return
    with reading(engine) as conn:
        if _owns(conn, token_id=token.id, kind="email", ident=str(entry.id)):
            return
        if entry.case_id and _owns(conn, token_id=token.id, kind="case", ident=entry.case_id):
            return
    raise _hidden(f"outbox email with id {entry.id}")
