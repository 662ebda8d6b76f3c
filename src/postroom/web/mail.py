"""Showing a stored email readably: headers, text, HTML and attachments of its MIME tree."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from fastapi.responses import HTMLResponse

from postroom.cases.service import SENT_EMAIL_NAME
from postroom.inbound.sanitise import sanitised

_SHOWN_HEADERS = (
    "From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "X-Postroom-Case",
)  # fmt: skip
# The HTML of an email is shown in a sandboxed frame from its own URL with this policy:
# no scripts, no network fetches, nothing that could act as the studio.
BODY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"
)


@dataclass
class MessageView:
    """The parts of a message a person reads."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[tuple[str, str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: int = 0


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _content(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def view(raw: bytes) -> MessageView:
    """Headers, the first text and HTML bodies, attachments, and notes on signing."""
    message = parse(raw)
    result = MessageView(size=len(raw))
    for name in _SHOWN_HEADERS:
        for value in message.get_all(name, []):
            result.headers.append((name, str(value)))
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "multipart/signed":
            result.notes.append("S/MIME signed")
        elif ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            result.notes.append("S/MIME encrypted: the body can only be read by its recipients")
        elif part.is_multipart() or ctype.endswith("pkcs7-signature"):
            continue  # containers and detached signatures have nothing to read
        elif part.get_filename() or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            result.attachments.append((part.get_filename() or "(unnamed)", ctype, size))
        elif ctype == "text/plain" and result.text is None:
            result.text = _content(part)
        elif ctype == "text/html" and result.html is None:
            result.html = _content(part)
    if message.get("DKIM-Signature"):
        result.notes.append("DKIM signed")
    return result


def html_body(raw: bytes | None, *, untrusted: bool = False) -> HTMLResponse:
    """The message's HTML part as a page for a sandboxed frame (its own strict policy).

    ``untrusted`` (mail Postroom did not write: received, or uploaded to a case) is
    sanitised first as well, as received HTML is everywhere it is shown.
    """
    html = view(raw).html if raw else None
    if html and untrusted:
        html = sanitised(html)
    response = HTMLResponse(html or "<p>This email has no HTML part.</p>")
    response.headers["Content-Security-Policy"] = BODY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def case_email_body(name: str, raw: bytes | None) -> HTMLResponse:
    """The HTML part of a case's ``.eml`` attachment: sanitised unless Postroom sent it.

    Only ``email-<n>.eml`` is Postroom's own (uploads may not take that name); a
    ``received-<n>.eml`` or an uploaded email was written by someone else.
    """
    return html_body(raw, untrusted=SENT_EMAIL_NAME.fullmatch(name) is None)
