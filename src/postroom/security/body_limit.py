"""Refuse request bodies over ``max_request_bytes`` with 413, before they are read whole.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is answered at once,
without reading a byte of the body; a chunked body is counted as it streams, and the
read that passes the limit raises :class:`ContentTooLarge`, which the application's own
handlers answer (the API as problem+json, the Studio as a page). Starlette's own
limiter was not used: it answers in plain text, and only once the application reads or
responds (after authentication and routing), never straight from the headers.
Every 413 says ``Connection: close``, so the server drops the rest of the body instead
of waiting for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("postroom.security")

CLOSE = {"Connection": "close"}


class ContentTooLarge(HTTPException):
    """Raised by ``receive`` once a streamed body passes the limit (an HTTP 413)."""

    # An HTTPException rather than a PostroomError: FastAPI lets HTTPExceptions out of
    # body parsing untouched, and both applications already render them their own way.
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=too_large_detail(limit), headers=dict(CLOSE))


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (the service's max_request_bytes)"


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when absent (a chunked body)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses malformed lengths before the app runs
    return None


Refusal = Callable[[Scope, int], Response]


class BodyLimit:
    """Answers 413 to request bodies over ``limit`` bytes, before reading them whole."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        refuse: Refusal,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse
        self.on_refused = on_refused or (lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None:
            # The server never hands the application more than the declared length.
            if declared > self.limit:
                self._note(scope, f"Content-Length {declared}")
                await self.refuse(scope, self.limit)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self._streamed(scope, receive, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            if seen > self.limit:  # read again after the refusal: still refused
                raise ContentTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    self._note(scope, f"a streamed body passed {self.limit} bytes")
                    raise ContentTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except ContentTooLarge:
            # Only when the application let it out unanswered.
            if started:
                raise
            await self.refuse(scope, self.limit)(scope, receive, send)

    def _note(self, scope: Scope, what: str) -> None:
        self.on_refused()
        client = scope.get("client")
        log.warning(
            "413 for %s %s from %s: %s",
            scope.get("method", "?"),
            scope.get("path", "?"),
            client[0] if client else "unknown",
            what,
        )
