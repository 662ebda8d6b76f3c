"""Reads and writes of the suppression list and the soft-bounce count.

Addresses are kept in lower case: an address suppressed once is suppressed however a
later email spells it. Every function runs in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from postroom.db import tables
from postroom.db.paging import contains
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.suppression.models import EVERYWHERE, Suppression, SuppressionReason

t = tables.suppressions
_R = tables.delivery_reports


def _entry(row: Any) -> Suppression:
    return Suppression(
        id=row.id,
        address=row.address,
        scope=row.scope,
        reason=SuppressionReason(row.reason),
        detail=row.detail,
        created_at=row.created_at,
        outbox_id=row.outbox_id,
        inbound_id=row.inbound_id,
        created_by=row.created_by,
    )


class SuppressionStore:
    """The suppression list: add, remove, look up, list."""

    def suppress(
        self,
        conn: Connection,
        address: str,
        *,
        scope: str,
        reason: SuppressionReason,
        detail: str = "",
        outbox_id: int | None = None,
        inbound_id: int | None = None,
        created_by: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Suppression, bool]:
        """Add ``address`` in ``scope``; an entry already there stays as it is, unless mail
        would lift it and the new reason would not (a complaint after a bounce): then the
        entry takes the new reason.

        Returns the entry and whether it is new (or took the new reason).
        """
        key = address.strip().lower()
        created_at = now or utcnow()
        # What a new entry is given, and what a stronger reason rewrites in an old one.
        given: dict[str, Any] = {
            "reason": reason,
            "detail": detail,
            "created_at": created_at,
            "outbox_id": outbox_id,
            "inbound_id": inbound_id,
            "created_by": created_by,
        }
        stored = {**given, "reason": reason.value}
        existing = self.get(conn, key, scope=scope)
        if existing is not None:
            if not existing.reason.lifted_by_mail or reason.lifted_by_mail:
                return existing, False
            conn.execute(update(t).where(t.c.id == existing.id).values(**stored))
            return replace(existing, **given), True
        try:
            with conn.begin_nested():
                new_id = conn.execute(
                    insert(t).values(address=key, scope=scope, **stored).returning(t.c.id)
                ).scalar_one()
        except IntegrityError:
            # Another writer added it a moment ago: theirs stands.
            found = self.get(conn, key, scope=scope)
            if found is None:
                raise
            return found, False
        return Suppression(id=new_id, address=key, scope=scope, **given), True

    def get(self, conn: Connection, address: str, *, scope: str) -> Suppression | None:
        row = conn.execute(
            select(t).where(t.c.address == address.strip().lower(), t.c.scope == scope)
        ).first()
        return _entry(row) if row is not None else None

    def remove(self, conn: Connection, address: str, *, scope: str | None = None) -> int:
        """Remove ``address`` from ``scope`` (every scope when None); how many went."""
        where = [t.c.address == address.strip().lower()]
        if scope is not None:
            where.append(t.c.scope == scope)
        removed = conn.execute(delete(t).where(*where)).rowcount
        if not removed:
            where_words = "" if scope is None else f" for {_scope_words(scope)}"
            raise NotFoundError(f"{address} is not suppressed{where_words}")
        return removed

    def lift_bounces(self, conn: Connection, address: str) -> list[Suppression]:
        """Remove the bounce entries of ``address`` (mail came from it); complaints stay."""
        key = address.strip().lower()
        bounces = [r.value for r in SuppressionReason if r.lifted_by_mail]
        rows = conn.execute(
            delete(t).where(t.c.address == key, t.c.reason.in_(bounces)).returning(*t.c)
        ).all()
        return [_entry(r) for r in rows]

    def entries(self, conn: Connection, addresses: Iterable[str]) -> list[Suppression]:
        """Every entry, in any scope, of ``addresses`` (oldest first): one read per batch."""
        keys = sorted({a.strip().lower() for a in addresses})
        if not keys:
            return []
        query = select(t).where(_among(conn, keys)).order_by(t.c.id)
        return [_entry(row) for row in conn.execute(query)]

    def list(
        self,
        conn: Connection,
        *,
        scope: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Suppression]:
        """Newest first; ``scope`` filters to one account (or ``*``), ``search`` by address."""
        query = select(t).order_by(t.c.created_at.desc(), t.c.id.desc())
        if scope is not None:
            query = query.where(t.c.scope == scope)
        if search:
            query = query.where(contains(t.c.address, search.strip().lower()))
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return [_entry(r) for r in conn.execute(query)]

    def soft_bounces(self, conn: Connection, address: str, *, days: float) -> int:
        """Soft bounces of ``address`` reported within the last ``days``."""
        since = utcnow() - timedelta(days=days)
        return int(
            conn.execute(
                select(func.count())
                .select_from(_R)
                .where(
                    _R.c.address == address.strip().lower(),
                    _R.c.kind == "bounced",
                    _R.c.soft.is_(True),
                    _R.c.at >= since,
                )
            ).scalar_one()
        )


def _among(conn: Connection, keys: list[str]) -> ColumnElement[bool]:
    """``address`` is one of ``keys``, as one parameter (an array, or JSON on SQLite).

    Read on every claim: an IN list of a batch's addresses is one bound parameter per
    address, which costs more to build and send than the read itself.
    """
    if conn.dialect.name == "postgresql":
        return t.c.address == any_(bindparam("keys", keys, type_=ARRAY(String)))
    each = func.json_each(bindparam("keys", json.dumps(keys))).table_valued("value")
    return t.c.address.in_(select(each.c.value))


def holding(entries: Iterable[Suppression], *, account: str | None) -> dict[str, Suppression]:
    """The entries that hold for ``account`` (its own and every account's), by address."""
    scopes = {EVERYWHERE} if account is None else {EVERYWHERE, account}
    found: dict[str, Suppression] = {}
    for entry in entries:
        if entry.scope in scopes:
            found.setdefault(entry.address, entry)
    return found


def scope_of(account: str | None, *, everywhere: bool) -> str:
    """The scope an automatic entry takes: the account's, or every account's."""
    return EVERYWHERE if everywhere or account is None else account


def _scope_words(scope: str) -> str:
    return "every account" if scope == EVERYWHERE else f"account {scope}"
