"""``Idempotency-Key``: a retried POST creates nothing twice, even when two race.

The key's row is written by the service's ``record`` hook, inside the transaction that
creates the case or email: both commit or neither does. When two requests with one key
race, the primary key (token, key) makes the second transaction fail and roll back; it
then answers as a replay of the first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Header
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import IntegrityError

from postroom.api.problems import ApiProblem
from postroom.db import tables
from postroom.db.engine import reading
from postroom.db.types import utcnow

T = TypeVar("T")
KEEP_KEYS = timedelta(hours=24)

KEY_PATTERN = r"^[A-Za-z0-9_.~+/=-]{1,200}$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="A unique key per logical request (e.g. a UUID): a retry with the same "
        "key and body replays the first answer instead of creating again.",
        examples=["5f1d6c3e-8f55-4d7b-9a57-1f3f0b1c2e4a"],
    ),
]


@dataclass(frozen=True, slots=True)
class Stored:
    """What a key recorded: the original status and what identifies the created resource."""

    status_code: int
    body: dict[str, Any]


def request_hash(route: str, payload: Any) -> str:
    canonical = json.dumps([route, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lookup(engine: Engine, token_id: str, key: str, digest: str) -> Stored | None:
    t = tables.idempotency_keys
    with reading(engine) as conn:
        row = conn.execute(select(t).where(t.c.token_id == token_id, t.c.key == key)).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise ApiProblem(
            422,
            "this Idempotency-Key was used with a different request; use a new key",
            kind="idempotency-key-reused",
        )
    return Stored(row.status_code, dict(row.body))


def _insert(conn: Connection, token_id: str, key: str, digest: str, stored: Stored) -> None:
    conn.execute(
        tables.idempotency_keys.insert().values(
            token_id=token_id,
            key=key,
            request_hash=digest,
            status_code=stored.status_code,
            body=stored.body,
            created_at=utcnow(),
        )
    )


def record_key(
    conn: Connection, *, token_id: str, key: str | None, digest: str, stored: Stored
) -> None:
    """Inside the creating transaction: remember the key (no-op without one)."""
    if key is not None:
        # Keys are kept a day, as clients retry within minutes; the old ones go here,
        # by the created_at index, so that the table does not grow without end.
        t = tables.idempotency_keys
        conn.execute(delete(t).where(t.c.created_at < utcnow() - KEEP_KEYS))
        _insert(conn, token_id, key, digest, stored)


def once(
    engine: Engine,
    *,
    token_id: str,
    key: str | None,
    digest: str,
    create: Callable[[], T],
) -> T | Stored:
    """``create()`` unless the key already created: then what it stored, to replay."""
    if key is None:
        return create()
    stored = _lookup(engine, token_id, key, digest)
    if stored is not None:
        return stored
    try:
        return create()
    except IntegrityError:
        # Most likely a concurrent request with this key committed first: replay it.
        # Anything else (no row found) is a real conflict and goes on as one.
        stored = _lookup(engine, token_id, key, digest)
        if stored is None:
            raise
        return stored
