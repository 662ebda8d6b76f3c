"""Persistence of authentication profiles; client secrets are encrypted before storage."""

from __future__ import annotations

from sqlalchemy import Connection, select

from postroom.auth.models import AuthProfile
from postroom.db import tables
from postroom.records import SecretRecordStore
from postroom.security import SecretBox

t = tables.auth_profiles


class AuthProfileStore(SecretRecordStore[AuthProfile]):
    """Reads and writes :class:`AuthProfile` records."""

    def __init__(self, secrets: SecretBox) -> None:
        super().__init__(
            secrets,
            table=t,
            model=AuthProfile,
            encrypted="client_secret",
            noun="authentication profile",
            label="the client secret of profile",
        )

    def exists(self, conn: Connection, name: str) -> bool:
        return conn.execute(select(t.c.name).where(t.c.name == name)).first() is not None
