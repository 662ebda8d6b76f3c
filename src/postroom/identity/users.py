"""Admin Studio users, with argon2id password hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, NotFoundError
from postroom.validation import check_record_name

MIN_PASSWORD_LENGTH = 12
# Verifying against this when the user does not exist keeps the timing the same.
_DUMMY_HASH = PasswordHasher().hash("postroom: no such user")


@dataclass(frozen=True, slots=True)
class AdminUser:
    """A person who may log in to the Admin Studio."""

    username: str
    created_at: datetime


class UserStore:
    """Creates users and checks their passwords."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    def create(self, conn: Connection, *, username: str, password: str) -> AdminUser:
        username = check_record_name(username.strip(), what="username")
        _check_password(password)
        if self.exists(conn, username):
            raise ConfigurationError(f"an admin user named {username!r} already exists")
        now = utcnow()
        conn.execute(
            tables.admin_users.insert().values(
                username=username, password_hash=self._hasher.hash(password), created_at=now
            )
        )
        return AdminUser(username, now)

    def set_password(self, conn: Connection, *, username: str, password: str) -> None:
        """A new password; every session the user had ends (a reset locks out a thief)."""
        if not self.exists(conn, username):
            raise NotFoundError(f"no admin user named {username!r}")
        _check_password(password)
        t = tables.admin_users
        conn.execute(
            update(t)
            .where(t.c.username == username)
            .values(password_hash=self._hasher.hash(password))
        )
        sessions = tables.web_sessions
        conn.execute(delete(sessions).where(sessions.c.username == username))

    def verify(self, conn: Connection, *, username: str, password: str) -> AdminUser | None:
        """The user when ``password`` is theirs, else None (same time either way)."""
        t = tables.admin_users
        row = conn.execute(select(t).where(t.c.username == username)).first()
        stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            conn.execute(
                update(t)
                .where(t.c.username == username)
                .values(password_hash=self._hasher.hash(password))
            )
        return AdminUser(row.username, row.created_at)

    def exists(self, conn: Connection, username: str) -> bool:
        t = tables.admin_users
        query = select(t.c.username).where(t.c.username == username)
        return conn.execute(query).first() is not None

    def list(self, conn: Connection) -> list[AdminUser]:
        t = tables.admin_users
        rows = conn.execute(select(t.c.username, t.c.created_at).order_by(t.c.username))
        return [AdminUser(r.username, r.created_at) for r in rows]

    def delete(self, conn: Connection, username: str) -> None:
        t = tables.admin_users
        if conn.execute(delete(t).where(t.c.username == username)).rowcount == 0:
            raise NotFoundError(f"no admin user named {username!r}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigurationError(
            f"an admin password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
