"""One signed webhook request: the Standard Webhooks headers, one POST, what came of it.

The body is the event's stored payload, byte for byte, so every retry of an event
carries the same ``webhook-id`` and body (receivers deduplicate on the id); only the
timestamp and its signature are new. Redirects are not followed (a redirect could lead
past the URL check). Of the answer's body at most ``MAX_ANSWER_BYTES`` are read and
dropped: an answer read to its end leaves its connection open for the next request (a
new TCP connection per delivery is what limited the rate before), while an endpoint that
sends more only loses the connection and can never make an agent download it all. The
whole request, body included, takes at most the timeout. Errors name the HTTP status or
the network trouble, never the secret. Connections go only to addresses the URL rules
accept, resolved and checked when the connection is opened (``pinned``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

import httpx2
from standardwebhooks import Webhook

from postroom.db.types import utcnow
from postroom.webhooks.pinned import AddressRules, PinnedTransport, connecting_for

USER_AGENT = "Postroom"
MAX_ANSWER_BYTES = 16 * 1024  # more and the connection is closed instead of kept
KEEPALIVE_CONNECTIONS = 20  # httpx's default: connections kept open at least


@dataclass(frozen=True, slots=True)
class SendResult:
    """The endpoint's status code, or why there was none, and how long it took."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(
    *, secret: str, event_id: str, payload: str, at: datetime | None = None
) -> dict[str, str]:
    """The headers of one request: id, timestamp and ``v1`` signature of the payload."""
    at = at or utcnow()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, payload),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    """POSTs signed events; one pool of kept-alive connections for all endpoints of an agent."""

    def __init__(
        self,
        *,
        timeout: float,
        transport: httpx2.AsyncBaseTransport | None = None,
        connections: int = KEEPALIVE_CONNECTIONS,
    ) -> None:
        self._timeout = timeout
        self._transport = transport
        # Enough kept-alive connections for every request in flight to find one open.
        self._limits = httpx2.Limits(
            max_connections=max(100, connections),
            max_keepalive_connections=max(KEEPALIVE_CONNECTIONS, connections),
        )
        self._client: httpx2.AsyncClient | None = None

    async def send(
        self,
        url: str,
        *,
        secret: str,
        event_id: str,
        payload: str,
        rules: AddressRules | None = None,
    ) -> SendResult:
        """POST ``payload`` to ``url`` signed with ``secret``; never raises for the network.

        A connection to an address ``rules`` refuse is not opened: the
        :class:`ConfigurationError` (or, for a name that does not resolve, the
        :class:`TransientDeliveryError`) of ``endpoint_addresses`` is raised instead.
        """
        client = self._client
        if client is None:
            client = self._client = httpx2.AsyncClient(
                timeout=self._timeout,
                transport=self._transport or PinnedTransport(limits=self._limits),
                follow_redirects=False,
                limits=self._limits,
            )
        headers = signed_headers(secret=secret, event_id=event_id, payload=payload)
        began = time.monotonic()
        code: int | None = None
        try:
            # One bound for the whole request: a receiver dripping its answer a byte at a
            # time cannot hold the request (and the delivery's lease) past the timeout.
            with connecting_for(url, rules or AddressRules()):
                async with (
                    asyncio.timeout(self._timeout),
                    client.stream(
                        "POST", url, content=payload.encode(), headers=headers
                    ) as response,
                ):
                    code = response.status_code
                    await _drain(response)
        except (TimeoutError, httpx2.HTTPError) as exc:
            if code is None:
                return self._result(None, _failure(url, exc, self._timeout), began)
            # The status came, the rest of the body did not: only the connection is lost.
        return self._answered(code, began)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @classmethod
    def _answered(cls, code: int | None, began: float) -> SendResult:
        if code is None:  # no status without an exception: kept for the type checker
            return cls._result(None, "no answer", began)
        return cls._result(code, None if 200 <= code < 300 else _status_text(code), began)

    @staticmethod
    def _result(code: int | None, error: str | None, began: float) -> SendResult:
        return SendResult(code, error, int((time.monotonic() - began) * 1000))


async def _drain(response: httpx2.Response) -> None:
    """Read a short answer to its end (so its connection is reused), or stop reading."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        return  # closed unread: the connection goes, the body is never downloaded
    got = 0
    async for chunk in response.aiter_raw():
        got += len(chunk)
        if got > MAX_ANSWER_BYTES:
            return  # longer than said or unsaid: stop here and drop the connection


def _failure(url: str, exc: BaseException, timeout: float) -> str:
    """Why no status came: the timeout, the connection, or the request's trouble."""
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, httpx2.ConnectError):
        return _connect_error(url, exc)
    return f"request failed ({type(exc).__name__})"


def _status_text(code: int) -> str:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    text = f"HTTP {code} {phrase}".strip()
    if 300 <= code < 400:
        text += " (redirects are not followed: give the endpoint's final URL)"
    return text


def _connect_error(url: str, exc: httpx2.ConnectError) -> str:
    host = httpx2.URL(url).host
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate of {host} not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {host} failed ({cause.reason or type(cause).__name__})"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection to {host} refused"
        cause = cause.__cause__ or cause.__context__
    return f"cannot connect to {host} ({_first(exc)})"


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
