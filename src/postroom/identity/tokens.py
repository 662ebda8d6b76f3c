"""API tokens: ``prt_<id>_<secret>``, stored as a SHA-256 of the secret, with scopes.

The secret has 256 bits of entropy, so a fast hash is enough (a slow one would only
slow every request); the id lets the row be found without comparing hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, NotFoundError
from postroom.validation import check_display_name

PREFIX = "prt"
# A token's last use is kept to this precision: see ApiTokens.touch.
TOUCH_EVERY = timedelta(minutes=1)


class Scope(StrEnum):
    """What a token may do: ``send`` creates cases and emails; ``admin`` everything."""

    SEND = "send"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as listed: never its secret."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just created: ``value`` is shown once and never stored."""

    token: ApiToken
    value: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """Creates, checks and revokes API tokens."""

    def create(self, conn: Connection, *, name: str, scopes: set[Scope]) -> IssuedToken:
        name = check_display_name(name, what="token name")
        if not name:
            raise ConfigurationError("a token needs a name (who or what uses it)")
        if not scopes:
            raise ConfigurationError("a token needs at least one scope: send or admin")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        conn.execute(
            tables.api_tokens.insert().values(
                id=token_id,
                name=name,
                secret_hash=_digest(secret),
                scopes=sorted(str(s) for s in scopes),
                created_at=now,
            )
        )
        token = ApiToken(token_id, name, frozenset(scopes), now, None, None)
        return IssuedToken(token, f"{PREFIX}_{token_id}_{secret}")

    def authenticate(self, conn: Connection, value: str) -> ApiToken | None:
        """The live token ``value`` names, or None; records its use (to the minute)."""
        token_id, secret = _parts(value)
        if token_id is None or not secret:
            return None
        row = conn.execute(
            select(tables.api_tokens).where(tables.api_tokens.c.id == token_id)
        ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, _digest(secret)):
            return None
        return _token(row)

    def touch_due(self, token: ApiToken, *, now: datetime | None = None) -> bool:
        """Whether a use of ``token`` now is to be recorded (see :meth:`touch`)."""
        last = token.last_used_at
        return last is None or (now or utcnow()) - last >= TOUCH_EVERY

    def touch(self, conn: Connection, token: ApiToken, *, now: datetime | None = None) -> bool:
        """Record a use of ``token`` unless one was recorded within ``TOUCH_EVERY``.

        A write per request would make every API call a write transaction (on SQLite, a
        turn at the database's one writer and a disk flush) to keep a timestamp exact.
        """
        now = now or utcnow()
        if not self.touch_due(token, now=now):
            return False
        conn.execute(
            update(tables.api_tokens)
            .where(tables.api_tokens.c.id == token.id)
            .values(last_used_at=now)
        )
        return True

    def list(self, conn: Connection) -> list[ApiToken]:
        t = tables.api_tokens
        return [_token(r) for r in conn.execute(select(t).order_by(t.c.created_at))]

    def revoke(self, conn: Connection, token_id: str) -> ApiToken:
        t = tables.api_tokens
        row = conn.execute(select(t).where(t.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"no API token with id {token_id!r}")
        if row.revoked_at is None:
            conn.execute(update(t).where(t.c.id == token_id).values(revoked_at=utcnow()))
            row = conn.execute(select(t).where(t.c.id == token_id)).one()
        return _token(row)


def _parts(value: str) -> tuple[str | None, str]:
    prefix, _, rest = value.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not token_id:
        return None, ""
    return token_id, secret


def token_id_of(value: str) -> str | None:
    """The id a token value names (never its secret), or None when it is not one."""
    token_id, secret = _parts(value)
    return token_id if secret else None


def _token(row: object) -> ApiToken:
    r = row._mapping  # type: ignore[attr-defined]
    return ApiToken(
        id=r["id"],
        name=r["name"],
        scopes=frozenset(Scope(s) for s in r["scopes"]),
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
    )
