"""The identity operations the CLI, the API and the Admin Studio share, one transaction each."""

from __future__ import annotations

from sqlalchemy import Engine

from postroom.db.engine import reading
from postroom.identity.sessions import Session, SessionStore
from postroom.identity.tokens import ApiToken, IssuedToken, Scope, TokenStore
from postroom.identity.users import AdminUser, UserStore


class Identity:
    """API tokens, admin users and Admin Studio sessions on one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.tokens = TokenStore()
        self.users = UserStore()
        self.sessions = SessionStore()

    def create_token(self, *, name: str, scopes: set[Scope]) -> IssuedToken:
        with self._engine.begin() as conn:
            return self.tokens.create(conn, name=name, scopes=scopes)

    def list_tokens(self) -> list[ApiToken]:
        with self._engine.connect() as conn:
            return self.tokens.list(conn)

    def revoke_token(self, token_id: str) -> ApiToken:
        with self._engine.begin() as conn:
            return self.tokens.revoke(conn, token_id)

    def authenticate(self, value: str) -> ApiToken | None:
        # Checked in a read; a write only when its last use is to be recorded.
        with reading(self._engine) as conn:
            token = self.tokens.authenticate(conn, value)
        if token is not None and self.tokens.touch_due(token):
            with self._engine.begin() as conn:
                self.tokens.touch(conn, token)
        return token

    def create_admin(self, *, username: str, password: str) -> AdminUser:
        with self._engine.begin() as conn:
            return self.users.create(conn, username=username, password=password)

    def admins(self) -> list[AdminUser]:
        with self._engine.connect() as conn:
            return self.users.list(conn)

    def log_in(self, *, username: str, password: str) -> tuple[str, Session] | None:
        """A new session id and session when the password is right, else None."""
        with self._engine.begin() as conn:
            user = self.users.verify(conn, username=username, password=password)
            if user is None:
                return None
            return self.sessions.open(conn, user.username)

    def session(self, session_id: str) -> Session | None:
        with self._engine.connect() as conn:
            return self.sessions.get(conn, session_id)

    def log_out(self, session_id: str) -> None:
        with self._engine.begin() as conn:
            self.sessions.close(conn, session_id)
