"""Showing a stored email readably: headers, text, HTML and attachments of its MIME tree."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from fastapi.responses import HTMLResponse

from postroom.cases.service import SENT_EMAIL_NAME
from postroom.correspondence.images import sniff
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
    # Images the HTML shows in place (Content-ID, inline): content id, name, type, size.
    inline: list[tuple[str, str, str, int]] = field(default_factory=list)
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
        elif part.get("Content-ID") and part.get_content_disposition() != "attachment":
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            cid = str(part["Content-ID"]).strip().strip("<>")
            result.inline.append((cid, part.get_filename() or "(unnamed)", ctype, size))
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
    if html and raw:
        html = with_images(html, related_images(parse(raw)))
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


# ``cid:ID`` where a reader resolves it: an attribute value (src=, background=) or url().
_CID = re.compile(
    r"""(?<=[=("'\s])cid:([A-Za-z0-9][A-Za-z0-9._@-]{0,127})(?![A-Za-z0-9._@-])""", re.IGNORECASE
)


def related_images(message: EmailMessage) -> dict[str, bytes]:
    """The message's parts with a Content-ID whose bytes are an image, by content id."""
    found: dict[str, bytes] = {}
    for part in message.walk():
        content_id = str(part.get("Content-ID", "")).strip().strip("<>")
        if not content_id or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and sniff(payload) is not None:
            found.setdefault(content_id, payload)
    return found


def with_images(html: str, images: Mapping[str, bytes]) -> str:
    """``html`` with each ``cid:ID`` it shows replaced by the image as a data: URI.

    Shown only in a frame under :data:`BODY_POLICY` (``img-src data:``): the image is
    displayed as a mail reader shows it, without a request of its own. Only bytes that
    are a PNG, JPEG, GIF or WebP image are written, with the type the bytes say.
    """
    if not images or "cid:" not in html.lower():
        return html

    def data_uri(match: re.Match[str]) -> str:
        content = images.get(match.group(1))
        kind = sniff(content) if content is not None else None
        if content is None or kind is None:
            return match.group(0)  # left as it is: a reader shows it as missing too
        return f"data:{kind};base64,{base64.b64encode(content).decode('ascii')}"

    return _CID.sub(data_uri, html)
