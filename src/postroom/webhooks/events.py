"""Writing events in the transaction of the change they report.

Each event is stored once with a stable id (the ``webhook-id`` of every delivery and
retry) and its payload, the exact JSON that is signed; one delivery row per enabled
endpoint that asked for its type. Nothing is written when no endpoint wants it.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, insert, select

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.webhooks.models import DeliveryStatus, Event

_E = tables.webhook_endpoints


def new_event_id(now: datetime) -> str:
    """``msg_`` + milliseconds since the epoch (sortable) + 80 random bits, base32."""
    millis = int(now.timestamp() * 1000).to_bytes(6, "big")
    raw = base64.b32encode(millis + secrets.token_bytes(10)).decode("ascii")
    return "msg_" + raw.rstrip("=").lower()


def payload_of(event: Event, now: datetime) -> str:
    """The Standard Webhooks body: ``{type, timestamp, data}`` as compact JSON."""
    body = {"type": str(event.type), "timestamp": _iso(now), "data": dict(event.data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=_json_default)


Endpoints = list[tuple[str, frozenset[str]]]
"""The enabled endpoints, each with the event types it asked for."""


def listening(conn: Connection) -> Endpoints:
    """The enabled endpoints and their event types (none: no event needs building)."""
    return [(row.name, frozenset(row.events or ())) for row in conn.execute(_enabled())]


@functools.cache
def _enabled() -> Select[Any]:
    return select(_E.c.name, _E.c.events).where(_E.c.enabled.is_(True))


def emit(
    conn: Connection,
    events: Sequence[Event],
    *,
    now: datetime | None = None,
    endpoints: Endpoints | None = None,
) -> list[str]:
    """Store ``events`` for every endpoint that wants them; returns the ids written.

    ``endpoints``: what :func:`listening` answered in this transaction, if asked already.
    """
    if not events:
        return []
    wanted = listening(conn) if endpoints is None else endpoints
    if not wanted:
        return []
    now = now or utcnow()
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event in events:
        targets = [name for name, types in wanted if event.type in types]
        if not targets:
            continue
        event_id = new_event_id(now)
        event_rows.append(
            {
                "id": event_id,
                "type": str(event.type),
                "payload": payload_of(event, now),
                "created_at": now,
            }
        )
        delivery_rows.extend(
            {
                "event_id": event_id,
                "endpoint": name,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "window_start": now,
                "created_at": now,
                "updated_at": now,
            }
            for name in targets
        )
    if event_rows:
        conn.execute(insert(tables.webhook_events), event_rows)
        conn.execute(insert(tables.webhook_deliveries), delivery_rows)
    return [r["id"] for r in event_rows]


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
