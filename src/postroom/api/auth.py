"""Bearer-token authentication (a middleware, so it comes before any parsing) and scopes.

Rejected tokens are throttled per client address and per token id (see
:mod:`postroom.security.throttle`): a growing delay, then 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from postroom.api.problems import ApiProblem, database_unavailable, problem_response
from postroom.api.writes import acting_as
from postroom.app import Postroom
from postroom.identity import ApiToken
from postroom.identity import Scope as TokenScope
from postroom.identity.tokens import token_id_of
from postroom.security.door import client_address, door_of, shown
from postroom.security.throttle import Verdict

log = logging.getLogger("postroom.api")

# The index, the health check and the documentation: what a newcomer opens first.
PUBLIC_PATHS = frozenset({"", "/", "/healthz", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/docs/",)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="postroom"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="postroom", error="invalid_token"'}

# Declared on routes for the OpenAPI document (securitySchemes); the middleware checks.
bearer = HTTPBearer(auto_error=False, description="An API token: `prt_<id>_<secret>`")


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


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
        self.door = door_of(postroom)
        self.throttle = self.door.tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _public(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        value = _bearer_value(scope)
        if value is None:
            response = problem_response(
                401,
                "send an API token: Authorization: Bearer prt_… (the documentation, "
                "without a token: /api/v1/docs)",
                headers=CHALLENGE,
            )
            await response(scope, receive, send)
            return
        address = client_address(scope)
        token_id = token_id_of(value)
        # Only the address can refuse before the check: a token id is no secret, and
        # strangers misusing it must not lock out the client that holds the token.
        verdict = self.throttle.admit(subject=None, address=address)
        if verdict.refused:
            await self._refuse(verdict, token_id, address)(scope, receive, send)
            return
        if verdict.delay:
            self.door.throttled("api", "delayed")
            await anyio.sleep(verdict.delay)
        try:
            token = await anyio.to_thread.run_sync(self.postroom.identity.authenticate, value)
        except DBAPIError:
            await database_unavailable()(scope, receive, send)
            return
        if token is None:
            self.throttle.failed(subject=token_id, address=address)
            self.door.failure("api")
            # The id only: the rest of the value is the secret.
            log.warning(
                "API token rejected%s (token id %s, address %s)",
                f" after a {verdict.delay:g} s delay" if verdict.delay else "",
                shown(token_id or "-"),
                address,
            )
            verdict = self.throttle.admit(subject=token_id, address=address)
            if verdict.refused:
                response = self._refuse(verdict, token_id, address)
            else:
                response = problem_response(
                    401, "the API token is unknown or revoked", headers=_INVALID
                )
            await response(scope, receive, send)
            return
        self.throttle.succeeded(subject=token.id, address=address)
        scope.setdefault("state", {})["token"] = token
        acting_as(token.name)  # who the request's writes are saved by
        await self.app(scope, receive, send)

    def _refuse(self, verdict: Verdict, token_id: str | None, address: str) -> JSONResponse:
        self.door.throttled("api", "refused")
        log.warning(
            "API token refused for %ss: too many failures (token id %s, address %s)",
            verdict.retry_after_header,
            shown(token_id or "-"),
            address,
        )
        return problem_response(
            429,
            "too many failed API tokens from this address or for this token; "
            f"try again in {verdict.retry_after_header} seconds",
            kind="too-many-attempts",
            headers={"Retry-After": verdict.retry_after_header},
        )


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
