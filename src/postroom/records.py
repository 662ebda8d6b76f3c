"""What the record stores share: the idempotent upsert and the store of a record with one
encrypted secret."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import Column, Connection, Table, delete, insert, select, update

from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.security import SecretBox

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


R = TypeVar("R", bound=BaseModel)


class SecretRecordStore(Generic[R]):
    """Reads and writes named records whose one secret field is encrypted at rest."""

    def __init__(
        self,
        secrets: SecretBox,
        *,
        table: Table,
        model: type[R],
        encrypted: str,
        noun: str,
        label: str,
    ) -> None:
        self._secrets = secrets
        self._table = table
        self._model = model
        self._secret_field = encrypted
        self._noun = noun  # "no {noun} named 'x'"
        self._label = label  # "{label} x" names the secret that cannot be read

    def _from_row(self, row: Any) -> R:
        data = dict(row._mapping)
        for key in ("created_at", "updated_at"):
            data.pop(key, None)
        data[self._secret_field] = self._secrets.decrypt(
            data[self._secret_field], what=f"{self._label} {data['name']}"
        )
        return self._model.model_validate(data)

    def get(self, conn: Connection, name: str) -> R:
        t = self._table
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no {self._noun} named {name!r}")
        return self._from_row(row)

    def list(self, conn: Connection) -> list[R]:
        t = self._table
        return [self._from_row(row) for row in conn.execute(select(t).order_by(t.c.name))]

    def put(self, conn: Connection, record: R) -> Change:
        """Insert or update; ``unchanged`` when the stored record is equal (secret included)."""
        now = utcnow()
        row = record.model_dump(mode="json", exclude={self._secret_field})
        try:
            # SecretStr compares by value, so a new secret counts as a change.
            same: bool | None = self.get(conn, row["name"]) == record
        except NotFoundError:
            same = None
        secret = getattr(record, self._secret_field).get_secret_value()
        row[self._secret_field] = self._secrets.encrypt(secret)
        t = self._table
        return upsert(
            conn,
            t,
            key=t.c.name,
            same=same,
            values={**row, "updated_at": now},
            on_insert={"created_at": now},
        )

    def delete(self, conn: Connection, name: str) -> None:
        t = self._table
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise NotFoundError(f"no {self._noun} named {name!r}")
