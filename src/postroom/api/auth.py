"""Bearer-token authentication (a middleware, so it comes before any parsing) and scopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from postroom.api.problems import ApiProblem, database_unavailable, problem_response
from postroom.app import Postroom
from postroom.identity import ApiToken
from postroom.identity import Scope as TokenScope

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="postroom"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="postroom", error="invalid_token"'}

# Declared on routes for the OpenAPI document (securitySchemes); the middleware checks.
bearer = HTTPBearer(auto_error=False, description="An API token: prt_<id>_<secret>")


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer_value(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


class TokenAuthentication:
    """Refuses every request but the public ones without a live token (401).

    A middleware rather than a dependency: FastAPI parses the body before dependencies
    run, so a dependency would answer a stranger's malformed body with 422, not 401.
    """

    def __init__(self, app: ASGIApp, *, postroom: Postroom) -> None:
        self.app = app
        self.postroom = postroom

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        value = _bearer_value(scope)
        if value is None:
            response = problem_response(
                401, "send an API token: Authorization: Bearer prt_…", headers=CHALLENGE
            )
            await response(scope, receive, send)
            return
        try:
            token = await anyio.to_thread.run_sync(self.postroom.identity.authenticate, value)
        except DBAPIError:
            await database_unavailable()(scope, receive, send)
            return
        if token is None:
            response = problem_response(
                401, "the API token is unknown or revoked", headers=_INVALID
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = token
        await self.app(scope, receive, send)


def current_token(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiToken:
    token: Any = getattr(request.state, "token", None)
    if not isinstance(token, ApiToken):  # only when the middleware is not installed
        raise ApiProblem(401, "send an API token", headers=CHALLENGE)
    return token


def require(scope: TokenScope) -> Callable[..., ApiToken]:
    """A dependency giving the request's token when it has ``scope``, else 403."""

    def check(token: Annotated[ApiToken, Depends(current_token)]) -> ApiToken:
        if not token.allows(scope):
            raise ApiProblem(403, f"this token lacks the {scope} scope", kind="insufficient-scope")
        return token

    return check


admin = Depends(require(TokenScope.ADMIN))
SendToken = Annotated[ApiToken, Depends(require(TokenScope.SEND))]
