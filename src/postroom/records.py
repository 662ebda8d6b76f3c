"""What the record stores share: the idempotent upsert."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Column, Connection, Table, insert, update

Change = Literal["created", "updated", "unchanged"]
"""What an idempotent upsert did."""


def upsert(
    conn: Connection,
    table: Table,
    *,
    key: Column[Any],
    same: bool | None,
    values: dict[str, Any],
    on_insert: dict[str, Any] | None = None,
) -> Change:
    """Insert ``values`` when ``same`` is None (no current record), update unless ``same``.

    ``on_insert`` holds columns written only when the record is created (``created_at``).
    """
    if same is None:
        conn.execute(insert(table).values(**values, **(on_insert or {})))
        return "created"
    if same:
        return "unchanged"
    conn.execute(update(table).where(key == values[key.name]).values(**values))
    return "updated"
