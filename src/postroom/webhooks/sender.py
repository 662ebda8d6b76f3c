"""One signed webhook request: the Standard Webhooks headers, one POST, what came of it.

The body is the event's stored payload, byte for byte, so every retry of an event
carries the same ``webhook-id`` and body (receivers deduplicate on the id); only the
timestamp and its signature are new. Redirects are not followed (a redirect could lead
past the URL check) and the answer's body is never read (an endpoint could send a lot).
Errors name the HTTP status or the network trouble, never the secret.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

import httpx2
from standardwebhooks import Webhook

from postroom.db.types import utcnow

USER_AGENT = "Postroom"


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
    """POSTs signed events; one connection pool for all endpoints of an agent."""

    def __init__(
        self, *, timeout: float, transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._timeout = timeout
        self._transport = transport
        self._client: httpx2.AsyncClient | None = None

    async def send(self, url: str, *, secret: str, event_id: str, payload: str) -> SendResult:
        """POST ``payload`` to ``url`` signed with ``secret``; never raises for the network."""
        client = self._client
        if client is None:
            client = self._client = httpx2.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            )
        headers = signed_headers(secret=secret, event_id=event_id, payload=payload)
        began = time.monotonic()
        try:
            # Streamed so that the body of the answer is never downloaded.
            async with client.stream(
                "POST", url, content=payload.encode(), headers=headers
            ) as response:
                code = response.status_code
        except httpx2.TimeoutException:
            return self._result(None, f"no answer within {self._timeout:g} s", began)
        except httpx2.ConnectError as exc:
            return self._result(None, _connect_error(url, exc), began)
        except httpx2.HTTPError as exc:
            return self._result(None, f"request failed ({type(exc).__name__})", began)
        return self._result(code, None if 200 <= code < 300 else _status_text(code), began)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @staticmethod
    def _result(code: int | None, error: str | None, began: float) -> SendResult:
        return SendResult(code, error, int((time.monotonic() - began) * 1000))


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
