"""One Microsoft Graph request for inbound mail: token, one refresh on 401, throttling, limits.

httpx2's exceptions and Graph's error answers become Postroom's errors here, once. A
403 says which application permission is missing, in words; a 410 (or Graph's
``syncStateNotFound``/``resyncRequired``) on a delta link is :class:`SyncStateLostError`,
which the source answers by reading the folder again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from postroom.auth.endpoints import check_endpoint
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import AccessToken, TokenCache
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    PostroomError,
    ThrottledError,
    TransientDeliveryError,
)
from postroom.transports.graph import MAX_THROTTLES, throttle_wait
from postroom.transports.graph_errors import error_body, graph_error

ERROR_BODY_LIMIT = 64 * 1024
JSON_LIMIT = 32 * 1024 * 1024  # a delta page of 1,000 entries is far smaller
SYNC_LOST_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
MISSING_CODES = frozenset({"", "ErrorItemNotFound", "ResourceNotFound"})
READ_ACCESS = (
    "the application may not read this mailbox: grant the app registration the "
    "Mail.ReadWrite application permission with admin consent (Mail.Read reads, but marking "
    "read, moving and deleting what was read need Mail.ReadWrite), and check that no "
    "application access policy leaves this mailbox out"
)
WRITE_ACCESS = (
    "the application may read this mailbox but not change it: after seen, move or delete "
    "needs the Mail.ReadWrite application permission with admin consent (Mail.Read only reads)"
)


class SyncStateLostError(TransientDeliveryError):
    """Graph no longer knows a delta or next link: the folder must be read again."""


@dataclass(frozen=True, slots=True)
class GraphAnswer:
    """A Graph answer; ``truncated`` when the body passed the caller's limit (``size`` read)."""

    status: int
    content: bytes
    size: int
    truncated: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.content)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class GraphClient:
    """Authenticated Graph requests of one inbound mailbox; one connection pool."""

    def __init__(
        self,
        profile: AuthProfile,
        *,
        tokens: TokenCache,
        allowed_hosts: Collection[str],
        timeout: float,
        http_transport: httpx2.AsyncBaseTransport | None = None,
        max_inline_wait: float = 10.0,
    ) -> None:
        self._profile = profile
        self._tokens = tokens
        self._allowed = allowed_hosts
        self._timeout = timeout
        self._transport = http_transport
        self._max_inline_wait = max_inline_wait
        self._client: httpx2.AsyncClient | None = None
        self._token: AccessToken | None = None

    async def call(
        self,
        method: str,
        url: str,
        *,
        stage: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        limit: int | None = None,
        missing_ok: bool = False,
        sync: bool = False,
    ) -> GraphAnswer:
        """One request, retried once with a fresh token on 401 and through short throttling.

        ``limit`` bounds a success body (past it the answer is ``truncated``);
        ``missing_ok`` returns a 404 instead of raising; ``sync`` turns a lost delta
        state into :class:`SyncStateLostError`.
        """
        # The token goes only where tokens may go, whatever link Graph handed over.
        check_endpoint(url.split("?", 1)[0], allowed=self._allowed, what="Graph URL")
        refreshed = False
        waited = 0.0
        throttles = 0
        while True:
            self._token = await self._tokens.get(self._profile)
            request_headers = {**(headers or {}), "Authorization": f"Bearer {self._token.value}"}
            answer = await self._send(
                method,
                url,
                params=params,
                headers=request_headers,
                body=json,
                limit=limit,
                stage=stage,
            )
            status = answer.status
            if 200 <= status < 300:
                return answer
            code, _ = error_body(answer.content)
            if status == 404 and missing_ok and code in MISSING_CODES:
                return answer
            if status == 401 and not refreshed:
                # Expired early or revoked: one fresh token (shared with every other user).
                refreshed = True
                self._token = await self._tokens.get(self._profile, stale=self._token)
                continue
            if sync and (status == 410 or code.lower() in SYNC_LOST_CODES):
                raise SyncStateLostError(
                    f"Graph answered {status} {code}".strip(), code=status, stage=stage
                )
            wait = throttle_wait(status, answer.headers)
            if wait is not None:
                throttles += 1
                if throttles > MAX_THROTTLES or waited + wait > self._max_inline_wait:
                    raise ThrottledError(
                        f"Graph is throttling reads of this mailbox (HTTP {status}); "
                        f"waiting {wait:g} s as asked",
                        retry_after=wait,
                        code=status,
                    )
                waited += wait
                await asyncio.sleep(wait)
                continue
            raise _error(status, answer.content, stage=stage, refreshed=refreshed)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
        body: Any,
        limit: int | None,
        stage: str,
    ) -> GraphAnswer:
        client = self._client
        if client is None:
            client = self._client = httpx2.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            )
        host = httpx2.URL(url).host
        try:
            async with client.stream(
                method, url, params=params, headers=headers, json=body
            ) as response:
                return await _read(response, limit)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise TransientDeliveryError(
                f"cannot connect to {host} ({type(exc).__name__})", stage="connect"
            ) from None
        except httpx2.TimeoutException as exc:
            raise TransientDeliveryError(
                f"no answer from {host} in {self._timeout:g} s ({type(exc).__name__})",
                stage=stage,
            ) from None
        except httpx2.HTTPError as exc:
            raise TransientDeliveryError(
                f"request to {host} failed ({type(exc).__name__})", stage=stage
            ) from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _read(response: httpx2.Response, limit: int | None) -> GraphAnswer:
    """The body, read no further than needed: a message past ``limit`` is not kept."""
    status = response.status_code
    headers = response.headers  # case-insensitive, as HTTP header names are
    success = 200 <= status < 300
    cap = ERROR_BODY_LIMIT if not success else JSON_LIMIT if limit is None else limit
    declared = response.headers.get("Content-Length", "")
    if success and limit is not None and declared.isdigit() and int(declared) > limit:
        return GraphAnswer(status, b"", int(declared), truncated=True, headers=headers)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            if success and limit is None:
                raise TransientDeliveryError(
                    f"Graph answered more than {JSON_LIMIT // (1024 * 1024)} MB", stage="read"
                )
            size = int(declared) if declared.isdigit() else len(body)
            return GraphAnswer(status, bytes(body[:cap]), size, truncated=True, headers=headers)
    return GraphAnswer(status, bytes(body), len(body), headers=headers)


def _error(status: int, content: bytes, *, stage: str, refreshed: bool) -> PostroomError:
    code, message = error_body(content)
    if status == 403:
        said = f"Graph answered 403 {code}".strip() + (f": {message}" if message else "")
        access = WRITE_ACCESS if stage == "settle" else READ_ACCESS
        return CredentialsRejectedError(f"{said} ({access})", code=status, stage=stage)
    error = graph_error(status, content, stage=stage)
    if isinstance(error, CredentialsRejectedError):
        if refreshed:
            return CredentialsRejectedError(
                f"{error.text}; a fresh token was refused too", code=status, stage=stage
            )
        return error
    if isinstance(error, TransientDeliveryError):
        return error
    # The mailbox, the folder or the request is wrong: nothing to retry until it is fixed.
    return ConfigurationError(str(error))
