"""Microsoft Graph transport: ``sendMail`` with an OAuth 2.0 bearer token.

A message is sent in one ``POST /users/{mailbox}/sendMail`` when it fits; larger
ones go through a draft, upload sessions for attachments of 3 MB or more, and
``send``. httpx2's exceptions are translated here, once. Graph has no idempotency
key: a request that went out and got no answer has an unknown outcome.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote

import httpx2

from postroom.accounts.models import EmailAccount
from postroom.auth.endpoints import check_endpoint
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import AccessToken, TokenCache
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    MessageError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from postroom.outbox.models import DeliveryReport
from postroom.outbox.retry import retry_after
from postroom.transports.base import Envelope
from postroom.transports.gate import MailboxGates
from postroom.transports.graph_errors import graph_error
from postroom.transports.graph_message import (
    REQUEST_LIMIT,
    SMALL_ATTACHMENT_LIMIT,
    GraphMessage,
    graph_message,
    header_addresses,
    is_sealed,
)

log = logging.getLogger("postroom.graph")

# Graph takes upload ranges in multiples of 320 KiB; 10 of them stay under its 4 MB advice.
UPLOAD_CHUNK = 10 * 320 * 1024
MAX_THROTTLES = 3  # waits inside one send before the email goes back to the outbox
DEFAULT_RETRY_AFTER = 10.0
# A Retry-After is obeyed within these bounds: never a busy loop, never years.
MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 3600.0


class GraphTransport:
    """Sends an account's emails through Microsoft Graph; one HTTP connection pool."""

    def __init__(
        self,
        account: EmailAccount,
        profile: AuthProfile,
        *,
        tokens: TokenCache,
        gates: MailboxGates,
        allowed_hosts: Collection[str] = (),
        timeout: float = 30.0,
        max_inline_wait: float = 10.0,
        http_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.account = account
        self._profile = profile
        self._tokens = tokens
        self._gates = gates
        self._allowed = allowed_hosts
        self._timeout = timeout
        self._max_inline_wait = max_inline_wait
        self._http_transport = http_transport
        self._client: httpx2.AsyncClient | None = None
        self._token: AccessToken | None = None
        self._users = account.graph_mailbox_url

    async def send(self, envelope: Envelope) -> DeliveryReport:
        try:
            check_endpoint(self.account.graph_url, allowed=self._allowed, what="graph_url")
        except ConfigurationError as exc:
            # The account's settings, not the email: it waits, held, until they are fixed.
            raise CredentialsRejectedError(str(exc), stage="account") from None
        if is_sealed(envelope.message):
            await self._send_mime(envelope)
            return DeliveryReport(
                accepted=tuple(envelope.recipients), reply="202 Accepted by Microsoft Graph"
            )
        try:
            message = graph_message(envelope.message, recipients=envelope.recipients)
        except (MessageError, ValueError) as exc:
            raise PermanentDeliveryError(f"the message cannot go to Graph: {exc}") from None
        if message.needs_draft:
            await self._send_with_draft(message)
        else:
            body = message.send_mail_body(save_to_sent_items=self.account.save_to_sent_items)
            await self._call("POST", f"{self._users}/sendMail", json=body, final=True)
        return DeliveryReport(
            accepted=tuple(envelope.recipients), reply="202 Accepted by Microsoft Graph"
        )

    async def _send_mime(self, envelope: Envelope) -> None:
        """A signed or encrypted message goes as MIME, byte for byte: JSON would undo it."""
        listed = {a.lower() for a in header_addresses(envelope.message, ("To", "Cc"))}
        extra = sorted(listed - {r.lower() for r in envelope.recipients})
        if extra:
            # Graph would deliver to them too: never send a copy to whom it is not for.
            raise PermanentDeliveryError(
                f"Graph sends a MIME message to every address in its To and Cc headers, and "
                f"{', '.join(extra)} are not recipients of this one",
                stage="sendMail",
            )
        bcc = [r for r in envelope.recipients if r.lower() not in listed]
        # Graph takes the recipients from the headers; Bcc goes outside the signed part.
        raw = (b"Bcc: " + ", ".join(bcc).encode() + b"\r\n" if bcc else b"") + envelope.message
        body = base64.b64encode(raw)
        if len(body) >= REQUEST_LIMIT:
            raise PermanentDeliveryError(
                f"the signed message is {len(raw) // 1024} KB: Graph takes MIME messages "
                "under 4 MB (base64 included); send it through SMTP instead",
                stage="sendMail",
            )
        headers = {"Content-Type": "text/plain"}
        await self._call(
            "POST", f"{self._users}/sendMail", content=body, headers=headers, final=True
        )

    async def _send_with_draft(self, message: GraphMessage) -> None:
        created = await self._call("POST", f"{self._users}/messages", json=message.draft_body())
        draft_id = _json(created).get("id")
        if not isinstance(draft_id, str) or not draft_id:
            raise TransientDeliveryError("Graph created a draft without an id", stage="draft")
        draft = f"{self._users}/messages/{quote(draft_id, safe='')}"
        sent = False
        try:
            for attachment in message.attachments:
                if len(attachment.content) < SMALL_ATTACHMENT_LIMIT:
                    await self._call("POST", f"{draft}/attachments", json=attachment.to_json())
                else:
                    await self._upload(draft, attachment.upload_item(), attachment.content)
            await self._call("POST", f"{draft}/send", final=True)
            sent = True
        except OutcomeUnknownError:
            sent = True  # the draft may have been sent: deleting it could lose the copy
            raise
        finally:
            if not sent:
                await self._delete_draft(draft)

    async def _upload(self, draft: str, item: Mapping[str, Any], content: bytes) -> None:
        session = _json(
            await self._call(
                "POST", f"{draft}/attachments/createUploadSession", json={"AttachmentItem": item}
            )
        )
        url = session.get("uploadUrl")
        if not isinstance(url, str):
            raise TransientDeliveryError("Graph opened no upload session", stage="upload")
        try:
            # Without the query: it holds the upload session's own authorisation.
            check_endpoint(url.split("?", 1)[0], allowed=self._allowed, what="upload URL")
        except ConfigurationError as exc:
            raise PermanentDeliveryError(str(exc), stage="upload") from None
        total = len(content)
        for start in range(0, total, UPLOAD_CHUNK):
            chunk = content[start : start + UPLOAD_CHUNK]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
            }
            # The upload URL carries its own authorisation; a bearer token must not go there.
            await self._call("PUT", url, content=chunk, headers=headers, bearer=False)

    async def _delete_draft(self, draft: str) -> None:
        try:
            # Not worth waiting out a throttling pause for: an unsent draft stays behind.
            await self._call("DELETE", draft, max_wait=0.0)
        except DeliveryError as exc:
            log.warning("could not delete an unsent Graph draft: %s", exc)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        bearer: bool = True,
        final: bool = False,
        max_wait: float | None = None,
    ) -> httpx2.Response:
        """One Graph request: token, mailbox slot, one refresh on 401, throttling waits."""
        if max_wait is None:
            max_wait = self._max_inline_wait
        stage = _stage(method, url)
        refreshed = False
        waited = 0.0
        throttles = 0
        while True:
            async with self._gates.slot(self.account.mailbox, max_wait=max_wait):
                request_headers = dict(headers or {})
                if bearer:
                    token = await self._bearer()
                    request_headers["Authorization"] = f"Bearer {token.value}"
                response = await self._send(
                    method, url, json=json, content=content, headers=request_headers, final=final
                )
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status == 401 and bearer and not refreshed:
                # The token may have expired early or been revoked: one fresh one.
                refreshed = True
                self._token = await self._tokens.get(self._profile, stale=self._token)
                continue
            wait = throttle_wait(status, response.headers)
            if wait is not None:
                self._gates.pause(self.account.mailbox, wait)
                throttles += 1
                if throttles > MAX_THROTTLES or waited + wait > self._max_inline_wait:
                    raise ThrottledError(
                        f"Graph is throttling mailbox {self.account.mailbox} "
                        f"(HTTP {status}); waiting {wait:g} s as asked",
                        retry_after=wait,
                        code=status,
                    )
                waited += wait
                continue
            if status == 401 and not bearer:
                # An upload URL carries its own short-lived authorisation: when it lapses
                # the credentials are fine; the next attempt opens a new session.
                raise TransientDeliveryError(
                    "the upload session's URL is no longer valid", code=status, stage=stage
                )
            error = graph_error(status, response.content, stage=stage)
            if isinstance(error, CredentialsRejectedError) and refreshed:
                error = CredentialsRejectedError(
                    f"{error.text}; a fresh token was refused too", code=status, stage=stage
                )
            raise error

    async def _bearer(self) -> AccessToken:
        self._token = await self._tokens.get(self._profile)
        return self._token

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        content: bytes | None,
        headers: dict[str, str],
        final: bool,
    ) -> httpx2.Response:
        client = self._client
        if client is None:
            client = self._client = httpx2.AsyncClient(
                timeout=self._timeout, transport=self._http_transport, follow_redirects=False
            )
        host = httpx2.URL(url).host
        try:
            return await client.request(method, url, json=json, content=content, headers=headers)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise TransientDeliveryError(
                f"cannot connect to {host} ({type(exc).__name__})", stage="connect"
            ) from None
        except (httpx2.ReadTimeout, httpx2.RemoteProtocolError, httpx2.ReadError) as exc:
            if final:
                # The request went out whole; Graph may have accepted it.
                raise OutcomeUnknownError(
                    f"no answer from {host} after the send request went out "
                    f"({type(exc).__name__}); the email may have been sent",
                    stage=_stage(method, url),
                ) from None
            raise TransientDeliveryError(
                f"no answer from {host} ({type(exc).__name__})", stage=_stage(method, url)
            ) from None
        except httpx2.HTTPError as exc:
            raise TransientDeliveryError(
                f"request to {host} failed ({type(exc).__name__})",
                stage=_stage(method, url),
            ) from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def throttle_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """The seconds Graph asks to wait (bounded) when it throttles, or None when it does not."""
    wait = retry_after(headers.get("Retry-After"))
    if status == 429 or (status == 503 and wait is not None):
        wait = DEFAULT_RETRY_AFTER if wait is None else wait
        return min(max(wait, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
    return None


def _json(response: httpx2.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _stage(method: str, url: str) -> str:
    """A short name for the request in errors: sendMail, send, messages, upload…"""
    if method == "PUT":
        return "upload"
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] if method == "POST" else method
