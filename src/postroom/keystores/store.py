"""Persistence of keystores: the key material and its password are encrypted at rest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.keystores.models import Keystore
from postroom.records import Change, upsert
from postroom.security import SecretBox

t = tables.keystores


class KeystoreStore:
    """Reads and writes :class:`Keystore` records."""

    def __init__(self, secrets: SecretBox) -> None:
        self._secrets = secrets

    def _from_row(self, row: Any) -> Keystore:
        what = f"keystore {row.name}"
        password = row.password
        return Keystore.model_validate(
            {
                "name": row.name,
                "kind": row.kind,
                "alias": row.alias,
                "content": self._secrets.decrypt(row.content, what=f"the content of {what}"),
                "password": None
                if password is None
                else self._secrets.decrypt(password, what=f"the password of {what}"),
            }
        )

    def get(self, conn: Connection, name: str) -> Keystore:
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no keystore named {name!r}")
        return self._from_row(row)

    def list(self, conn: Connection) -> list[Keystore]:
        return [self._from_row(row) for row in conn.execute(select(t).order_by(t.c.name))]

    def put(self, conn: Connection, keystore: Keystore) -> Change:
        now = utcnow()
        try:
            same: bool | None = self.get(conn, keystore.name) == keystore
        except NotFoundError:
            same = None
        values = {
            "name": keystore.name,
            "kind": str(keystore.kind),
            "alias": keystore.alias,
            "content": self._secrets.encrypt(keystore.content.get_secret_value()),
            "password": None
            if keystore.password is None
            else self._secrets.encrypt(keystore.password.get_secret_value()),
            "updated_at": now,
        }
        return upsert(
            conn, t, key=t.c.name, same=same, values=values, on_insert={"created_at": now}
        )

    def delete(self, conn: Connection, name: str) -> None:
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise NotFoundError(f"no keystore named {name!r}")
