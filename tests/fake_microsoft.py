"""A real test double of Microsoft Entra ID's token endpoint and Microsoft Graph's mail API.

Served over HTTP on 127.0.0.1 from a thread, for the project's real httpx2 and Authlib
code. It validates what it receives as the real services do (the documented
``sendMail`` shape, x- headers only, bearer tokens, upload ranges in order, no
Authorization header on upload URLs) and answers with their error shapes.

    with microsoft_server() as ms:
        ms.url                      # http://127.0.0.1:PORT
        ms.token_endpoint           # .../contoso-tenant/oauth2/v2.0/token
        ms.script("sendMail", (429, {"Retry-After": "1"}, b""))   # next answers
        ms.sent, ms.token_requests, ms.requests, ms.max_in_flight
        ms.mail.deliver(MAILBOX, raw)   # a message in the inbox, read through delta query
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fake_microsoft_mail import MailStore
from tests.fake_microsoft_rules import (
    REQUEST_LIMIT,
    SMALL_ATTACHMENT_LIMIT,
    GraphRefusal,
    Reply,
    check_inline_fields,
    check_message,
    decode_attachment,
    inline_ids,
)

TENANT = "contoso-tenant"
CLIENT_ID = "app-1"
CLIENT_SECRET = "s3cret-value"
MAILBOX = "sender@contoso.example"
GRAPH_RESOURCE = "https://graph.microsoft.com"
SMTP_RESOURCE = "https://outlook.office365.com"
MAX_BODY = 200 * 1024 * 1024


@dataclass
class App:
    """A registered application: its tenant, secret and application permissions."""

    tenant: str = TENANT
    secret: str = CLIENT_SECRET
    roles: list[str] = field(default_factory=lambda: ["Mail.Send"])


@dataclass
class Issued:
    token: str
    resource: str
    roles: list[str]
    expires_at: float


@dataclass
class Sent:
    """One message Graph accepted for sending."""

    mailbox: str
    message: dict[str, Any]
    save_to_sent_items: bool
    attachments: dict[str, bytes]
    via: str  # "sendMail", "mime" or "draft"
    mime: bytes = b""  # the message as sent in MIME format
    inline: dict[str, str] = field(default_factory=dict)  # inline attachments: name -> contentId


@dataclass
class Draft:
    mailbox: str
    message: dict[str, Any]
    attachments: dict[str, bytes] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload:
    draft: str
    name: str
    size: int
    secret: str
    received: bytearray = field(default_factory=bytearray)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class FakeMicrosoft:
    """Entra ID's token endpoint and Graph's mail API; thread-safe, scriptable."""

    def __init__(self) -> None:
        self.url = ""
        self.apps: dict[str, App] = {CLIENT_ID: App()}
        self.tenants = {TENANT}
        self.mailboxes: dict[str, str] = {MAILBOX: "active"}  # or "inactive"
        self.expires_in = 3599
        self.graph_delay = 0.0
        self.mailbox_concurrency = 4  # Graph answers 429 to a fifth concurrent request
        self.lock = threading.Lock()
        self.issued: dict[str, Issued] = {}
        self.token_requests = 0
        self.requests: list[tuple[float, str, str, int]] = []
        self.sent: list[Sent] = []
        self.drafts: dict[str, Draft] = {}
        self.deleted_drafts: list[str] = []
        self.uploads: dict[str, Upload] = {}
        self.upload_chunks: list[tuple[int, int, int]] = []
        self.upload_auth_headers = 0
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.scripted: dict[str, deque[Reply | tuple[str, float]]] = defaultdict(deque)
        self.mail = MailStore(self.lock)

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/{TENANT}/oauth2/v2.0/token"

    def script(self, kind: str, *replies: Reply | tuple[str, float]) -> None:
        """Answer the next requests of ``kind`` (token, sendMail, send, users, messages,
        attachments, createUploadSession, upload; delta, $value, mailFolders, patch, move,
        delete) so: a reply, ("hang", seconds) or ("drop", 0)."""
        with self.lock:
            self.scripted[kind].extend(replies)

    def expire_all_tokens(self) -> None:
        with self.lock:
            for issued in self.issued.values():
                issued.expires_at = 0.0

    def token_valid(self, token: str, resource: str) -> bool:
        """Whether ``token`` was issued here for ``resource`` and is unexpired (XOAUTH2)."""
        with self.lock:
            issued = self.issued.get(token)
        return (
            issued is not None and issued.resource == resource and time.time() < issued.expires_at
        )

    # --- the token endpoint -------------------------------------------------------------

    def token(self, tenant: str, form: dict[str, str], headers: Any) -> Reply:
        with self.lock:
            self.token_requests += 1
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = headers.get("Authorization", "")
        if basic.startswith("Basic "):
            decoded = base64.b64decode(basic[6:]).decode()
            client_id, _, secret = (unquote(p) for p in decoded.partition(":"))
        if tenant not in self.tenants:
            return _aad(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad(400, "unsupported_grant_type", 70003, "The app requested an "
                        "unsupported grant type.")  # fmt: skip
        app = self.apps.get(client_id)
        if app is None or app.tenant != tenant:
            return _aad(400, "unauthorized_client", 700016, f"Application with identifier "
                        f"'{client_id}' was not found in the directory '{tenant}'.")  # fmt: skip
        if secret != app.secret:
            return _aad(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure "
                        "the secret being sent in the request is the client secret value, not "
                        "the client secret ID.")  # fmt: skip
        scope = form.get("scope", "")
        resource = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or resource not in (GRAPH_RESOURCE, SMTP_RESOURCE):
            return _aad(400, "invalid_scope", 1002012, f"The provided value for scope {scope} "
                        "is not valid. Client credential flows must have a scope value with "
                        "/.default suffixed to the resource identifier.")  # fmt: skip
        now = time.time()
        claims = {"aud": resource, "roles": app.roles, "tid": tenant, "appid": client_id,
                  "iat": int(now), "exp": int(now + self.expires_in)}  # fmt: skip
        token = ".".join(
            (
                _b64url(json.dumps({"typ": "JWT", "alg": "RS256"}).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(16)),
            )
        )
        with self.lock:
            self.issued[token] = Issued(token, resource, app.roles, now + self.expires_in)
        body = {"token_type": "Bearer", "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in, "access_token": token}  # fmt: skip
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    # --- Graph --------------------------------------------------------------------------

    def bearer(self, headers: Any) -> Issued:
        value = headers.get("Authorization", "")
        with self.lock:
            issued = self.issued.get(value.removeprefix("Bearer ")) if value else None
        if issued is None or time.time() >= issued.expires_at:
            raise GraphRefusal(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        if issued.resource not in (GRAPH_RESOURCE, self.url):
            raise GraphRefusal(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
        return issued

    def mailbox(self, upn: str) -> str:
        key = unquote(upn).lower()
        state = self.mailboxes.get(key)
        if state is None:
            raise GraphRefusal(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
        if state != "active":
            raise GraphRefusal(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return key

    def graph(
        self, method: str, parts: list[str], headers: Any, body: bytes, query: str = ""
    ) -> Reply:
        """Route /v1.0/users/{upn}/... after the bearer token is checked."""
        issued = self.bearer(headers)
        mailbox = self.mailbox(parts[0])
        rest = parts[1:]
        with self.lock:
            self.in_flight[mailbox] += 1
            self.max_in_flight[mailbox] = max(self.max_in_flight[mailbox], self.in_flight[mailbox])
            over = self.in_flight[mailbox] > self.mailbox_concurrency
        try:
            if over:
                refusal = GraphRefusal(429, "ApplicationThrottled", "Too many concurrent requests")
                status, headers, content = refusal.reply
                return status, {**headers, "Retry-After": "1"}, content
            time.sleep(self.graph_delay)  # lets concurrent requests overlap
            if rest and not (rest[:1] == ["messages"] and unquote(rest[-1]) in self.drafts):
                reading = self.mail.handle(
                    method, mailbox, rest, query, headers, body, issued.roles, self.url
                )
                if reading is not None:
                    return reading
            if method == "GET" and not rest:
                if "User.Read.All" not in issued.roles:
                    raise GraphRefusal(
                        403,
                        "Authorization_RequestDenied",
                        "Insufficient privileges to complete the operation.",
                    )
                user = {"id": "0f5d3c8e", "userPrincipalName": mailbox, "mail": mailbox}
                return _json(200, user)
            if "Mail.Send" not in issued.roles:
                raise GraphRefusal(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            if method == "POST" and rest == ["sendMail"] and _is_mime(headers):
                return self.send_mime(mailbox, body)
            data = _load(body) if body else {}
            if method == "POST" and rest == ["sendMail"]:
                return self.send_mail(mailbox, data, len(body))
            if rest[-1:] != ["send"] and "Mail.ReadWrite" not in issued.roles:
                # Drafts, their attachments and upload sessions need Mail.ReadWrite.
                raise GraphRefusal(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            if method == "POST" and rest == ["messages"]:
                check_message(data)
                draft_id = "AAMk" + secrets.token_hex(8)
                with self.lock:
                    self.drafts[draft_id] = Draft(mailbox, data)
                return _json(201, {**data, "id": draft_id, "isDraft": True})
            if len(rest) >= 2 and rest[0] == "messages":
                return self.draft_call(method, mailbox, rest[1], rest[2:], data)
            raise GraphRefusal(404, "ResourceNotFound", "Resource not found for the segment.")
        finally:
            with self.lock:
                self.in_flight[mailbox] -= 1

    def send_mail(self, mailbox: str, data: Any, size: int) -> Reply:
        if size > REQUEST_LIMIT:
            raise GraphRefusal(413, "RequestEntityTooLarge", "The request is too large.")
        if not isinstance(data, dict) or "message" not in data:
            raise GraphRefusal(400, "RequestBodyRead", "sendMail needs a message")
        for key in data:
            if key not in ("message", "saveToSentItems"):
                raise GraphRefusal(
                    400,
                    "RequestBodyRead",
                    f"The property '{key}' does not exist on type "
                    "'Microsoft.OutlookServices.SendMailParameters'.",
                )
        save = data.get("saveToSentItems", True)
        if save not in (True, False, "true", "false"):
            raise GraphRefusal(400, "RequestBodyRead", "saveToSentItems must be a boolean")
        message = data["message"]
        check_message(message)
        self.check_sender(mailbox, message)
        files = dict(
            decode_attachment(a, limit=SMALL_ATTACHMENT_LIMIT)
            for a in message.get("attachments", [])
        )
        with self.lock:
            inline = inline_ids(message.get("attachments"))
            sent = Sent(mailbox, message, save in (True, "true"), files, "sendMail", inline=inline)
            self.sent.append(sent)
        return 202, {}, b""

    def send_mime(self, mailbox: str, body: bytes) -> Reply:
        """sendMail in MIME format: the whole message, base64, as text/plain."""
        if len(body) > REQUEST_LIMIT:
            raise GraphRefusal(413, "RequestEntityTooLarge", "The request is too large.")
        try:
            mime = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            text = "Invalid base64 string for MIME content."
            raise GraphRefusal(400, "ErrorMimeContentInvalidBase64String", text) from None
        parsed = email.message_from_bytes(mime, policy=email.policy.default)
        recipients = [
            a for h in ("To", "Cc", "Bcc") for v in parsed.get_all(h, []) for a in v.addresses
        ]
        if not recipients:
            raise GraphRefusal(400, "ErrorInvalidRecipients", "The message has no recipients.")
        sender = parsed["From"].addresses[0].addr_spec.lower() if parsed["From"] else ""
        if sender != mailbox:
            raise GraphRefusal(403, "ErrorSendAsDenied", "The user may not send as this address.")
        with self.lock:
            self.sent.append(Sent(mailbox, {}, True, {}, "mime", mime))
        return 202, {}, b""

    def check_sender(self, mailbox: str, message: dict[str, Any]) -> None:
        for key in ("from", "sender"):
            if key in message and message[key]["emailAddress"]["address"].lower() != mailbox:
                raise GraphRefusal(
                    403,
                    "ErrorSendAsDenied",
                    "The user account which was used to submit this request does not have the "
                    "right to send mail on behalf of the specified sending account.",
                )

    def draft_call(
        self, method: str, mailbox: str, draft_id: str, rest: list[str], data: Any
    ) -> Reply:
        with self.lock:
            draft = self.drafts.get(unquote(draft_id))
        if draft is None or draft.mailbox != mailbox:
            raise GraphRefusal(404, "ErrorItemNotFound", "The specified object was not found.")
        if method == "DELETE" and not rest:
            with self.lock:
                self.drafts.pop(unquote(draft_id))
                self.deleted_drafts.append(unquote(draft_id))
            return 204, {}, b""
        if method == "POST" and rest == ["attachments"]:
            name, content = decode_attachment(data, limit=SMALL_ATTACHMENT_LIMIT)
            draft.attachments[name] = content
            draft.inline.update(inline_ids([data]))
            return _json(201, {"id": secrets.token_hex(6), "name": name})
        if method == "POST" and rest == ["attachments", "createUploadSession"]:
            item = data.get("AttachmentItem") if isinstance(data, dict) else None
            size = item.get("size") if isinstance(item, dict) else None
            if not isinstance(item, dict) or item.get("attachmentType") != "file":
                raise GraphRefusal(400, "RequestBodyRead", "AttachmentItem of type file needed")
            if not isinstance(size, int) or not 0 < size < 150 * 1024 * 1024:
                raise GraphRefusal(400, "ErrorAttachmentSizeInvalid", "size must be under 150 MB")
            check_inline_fields(item)
            draft.inline.update(inline_ids([item]))
            session = secrets.token_hex(8)
            upload = Upload(unquote(draft_id), str(item.get("name")), size, secrets.token_hex(8))
            with self.lock:
                self.uploads[session] = upload
            url = f"{self.url}/upload/{session}?authtoken={upload.secret}"
            expires = "2030-01-01T00:00:00.0000000Z"
            reply = {"uploadUrl": url, "expirationDateTime": expires, "nextExpectedRanges": ["0-"]}
            return _json(201, reply)
        if method == "POST" and rest == ["send"]:
            with self.lock:
                self.drafts.pop(unquote(draft_id))
                sent = Sent(mailbox, draft.message, True, draft.attachments, "draft")
                sent.inline = draft.inline
                self.sent.append(sent)
            return 202, {}, b""
        raise GraphRefusal(404, "ResourceNotFound", "Resource not found for the segment.")

    def upload(self, session: str, query: str, headers: Any, body: bytes) -> Reply:
        if headers.get("Authorization"):
            with self.lock:
                self.upload_auth_headers += 1
            raise GraphRefusal(400, "InvalidRequest", "Do not send an Authorization header.")
        with self.lock:
            upload = self.uploads.get(session)
        if upload is None or parse_qs(query).get("authtoken") != [upload.secret]:
            raise GraphRefusal(401, "InvalidAuthenticationToken", "The upload URL is not valid.")
        try:
            unit, _, spec = headers.get("Content-Range", "").partition(" ")
            span, _, total = spec.partition("/")
            start, end = (int(x) for x in span.split("-"))
            if unit != "bytes" or int(total) != upload.size or end - start + 1 != len(body):
                raise ValueError
        except ValueError:
            raise GraphRefusal(400, "InvalidContentRange", "Content-Range is not valid") from None
        if start != len(upload.received):
            raise GraphRefusal(
                416, "InvalidRange", f"expected the range from {len(upload.received)}"
            )
        with self.lock:
            upload.received.extend(body)
            self.upload_chunks.append((start, end, upload.size))
        if len(upload.received) < upload.size:
            return _json(200, {"nextExpectedRanges": [str(len(upload.received))]})
        with self.lock:
            self.drafts[upload.draft].attachments[upload.name] = bytes(upload.received)
        return 201, {"Location": f"{self.url}/attachments/{session}"}, b""

    # --- dispatch -----------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> Reply | tuple[str, float]:
        split = urlsplit(target)
        parts = [p for p in split.path.split("/") if p]
        kind = _kind(method, parts)
        with self.lock:
            scripted = self.scripted[kind].popleft() if self.scripted[kind] else None
        if scripted is not None:
            return scripted
        try:
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                return self.token(parts[0], form, headers)
            if parts[:2] == ["v1.0", "users"] and len(parts) >= 3:
                return self.graph(method, parts[2:], headers, body, split.query)
            if parts[:1] == ["upload"] and len(parts) == 2 and method == "PUT":
                return self.upload(parts[1], split.query, headers, body)
            raise GraphRefusal(404, "ResourceNotFound", "Unknown path")
        except GraphRefusal as refusal:
            return refusal.reply


def _kind(method: str, parts: list[str]) -> str:
    if parts[-1:] == ["token"]:
        return "token"
    if parts[:1] == ["upload"]:
        return "upload"
    if method == "GET" and len(parts) == 3:
        return "users"
    if method == "GET" and parts[-1] in ("delta", "$value", "mailFolders", "childFolders"):
        return "mailFolders" if parts[-1] == "childFolders" else parts[-1]
    return parts[-1] if method == "POST" and len(parts) > 3 else method.lower()


def _is_mime(headers: Any) -> bool:
    return str(headers.get("Content-Type", "")).startswith("text/plain")


def _json(status: int, data: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _load(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise GraphRefusal(400, "RequestBodyRead", "the body is not JSON") from None


def _aad(status: int, error: str, code: int, text: str) -> Reply:
    trace = secrets.token_hex(8)
    description = (
        f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {trace} "
        "Timestamp: 2026-11-26 12:00:00Z"
    )
    return _json(
        status,
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "trace_id": trace,
            "correlation_id": trace,
        },
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client keeps connections open
    server: _Server

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply((413, {}, b""))
            return
        body = self.rfile.read(length) if length else b""
        reply = fake.handle(self.command, self.path, self.headers, body)
        if reply[0] == "hang":
            time.sleep(min(float(reply[1]), 30.0))
            reply = (202, {}, b"")
        if reply[0] == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            with fake.lock:
                fake.requests.append((time.monotonic(), self.command, self.path, 0))
            return
        assert isinstance(reply[0], int)
        with fake.lock:
            fake.requests.append((time.monotonic(), self.command, self.path, reply[0]))
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        status, headers, body = reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read fake.requests instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeMicrosoft


@contextmanager
def microsoft_server() -> Iterator[FakeMicrosoft]:
    """Serve a :class:`FakeMicrosoft` on 127.0.0.1 (a free port) for the block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeMicrosoft()
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
