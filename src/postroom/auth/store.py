"""Persistence of authentication profiles; client secrets are encrypted before storage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from postroom.auth.models import AuthProfile
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.records import Change, upsert
from postroom.security import SecretBox

t = tables.auth_profiles


class AuthProfileStore:
    """Reads and writes :class:`AuthProfile` records."""

    def __init__(self, secrets: SecretBox) -> None:
        self._secrets = secrets

    def _from_row(self, row: Any) -> AuthProfile:
        data = dict(row._mapping)
        for key in ("created_at", "updated_at"):
            data.pop(key, None)
        data["client_secret"] = self._secrets.decrypt(
            data["client_secret"], what=f"the client secret of profile {data['name']}"
        )
        return AuthProfile.model_validate(data)

    def get(self, conn: Connection, name: str) -> AuthProfile:
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no authentication profile named {name!r}")
        return self._from_row(row)

    def exists(self, conn: Connection, name: str) -> bool:
        return conn.execute(select(t.c.name).where(t.c.name == name)).first() is not None

    def list(self, conn: Connection) -> list[AuthProfile]:
        return [self._from_row(row) for row in conn.execute(select(t).order_by(t.c.name))]

    def put(self, conn: Connection, profile: AuthProfile) -> Change:
        """Insert or update; ``unchanged`` when the stored record is equal (secret included)."""
        now = utcnow()
        try:
            # SecretStr compares by value, so a new secret counts as a change.
            same: bool | None = self.get(conn, profile.name) == profile
        except NotFoundError:
            same = None
        row = profile.model_dump(mode="json", exclude={"client_secret"})
        row["client_secret"] = self._secrets.encrypt(profile.client_secret.get_secret_value())
        return upsert(
            conn,
            t,
            key=t.c.name,
            same=same,
            values={**row, "updated_at": now},
            on_insert={"created_at": now},
        )

    def delete(self, conn: Connection, name: str) -> None:
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise NotFoundError(f"no authentication profile named {name!r}")
