"""Who may use the service: API tokens with scopes, Admin Studio users and their sessions."""

from postroom.identity.service import Identity
from postroom.identity.sessions import Session, SessionStore
from postroom.identity.tokens import ApiToken, IssuedToken, Scope, TokenStore
from postroom.identity.users import AdminUser, UserStore

__all__ = [
    "AdminUser",
    "ApiToken",
    "Identity",
    "IssuedToken",
    "Scope",
    "Session",
    "SessionStore",
    "TokenStore",
    "UserStore",
]
