"""Admin Studio sessions: a random id in the cookie, its SHA-256 in the database.

Each session has its own CSRF token, which every form posts back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select

from postroom.db import tables
from postroom.db.types import utcnow

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user's session."""

    username: str
    csrf_token: str
    expires_at: datetime


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Opens, finds and closes sessions; expired ones are swept when a new one opens."""

    def __init__(self, lifetime: timedelta = SESSION_LIFETIME) -> None:
        self._lifetime = lifetime

    def open(self, conn: Connection, username: str) -> tuple[str, Session]:
        """A new session id (for the cookie only) and the session."""
        now = utcnow()
        t = tables.web_sessions
        conn.execute(delete(t).where(t.c.expires_at < now))
        session_id = secrets.token_urlsafe(32)
        session = Session(username, secrets.token_urlsafe(32), now + self._lifetime)
        conn.execute(
            t.insert().values(
                id_hash=_digest(session_id),
                username=username,
                csrf_token=session.csrf_token,
                created_at=now,
                expires_at=session.expires_at,
            )
        )
        return session_id, session

    def get(self, conn: Connection, session_id: str) -> Session | None:
        t = tables.web_sessions
        row = conn.execute(select(t).where(t.c.id_hash == _digest(session_id))).first()
        if row is None or row.expires_at <= utcnow():
            return None
        return Session(row.username, row.csrf_token, row.expires_at)

    def close(self, conn: Connection, session_id: str) -> None:
        t = tables.web_sessions
        conn.execute(delete(t).where(t.c.id_hash == _digest(session_id)))
