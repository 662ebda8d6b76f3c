"""A stored email as Microsoft Graph's JSON message: pure, no I/O.

The outbox keeps RFC 5322 bytes; Graph's ``sendMail`` takes JSON
(https://learn.microsoft.com/graph/api/user-sendmail). Headers other than ``X-``
ones cannot be set through Graph, so From, To, Cc, Reply-To and Message-ID become
message fields and every ``X-`` header an ``internetMessageHeaders`` entry. A request
must stay under 4 MB and an attachment of 3 MB or more needs an upload session
(https://learn.microsoft.com/graph/outlook-large-attachments).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from postroom.errors import MessageError

SMALL_ATTACHMENT_LIMIT = (
    3 * 1024 * 1024
)  # Graph: attachments of 3 MB or more need an upload session
REQUEST_LIMIT = 4 * 1024 * 1024  # Graph: a sendMail JSON request must stay under 4 MB

_BREAKS = re.compile(r"[\r\n]+")


def _line(value: str) -> str:
    return _BREAKS.sub(" ", value).strip()


@dataclass(frozen=True, slots=True)
class FileAttachment:
    """One attachment of the message, as Graph takes it."""

    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str | None = None

    def _inline(self) -> dict[str, Any]:
        if not self.is_inline:
            return {}
        extra: dict[str, Any] = {"isInline": True}
        if self.content_id:
            extra["contentId"] = self.content_id
        return extra

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.content).decode("ascii"),
            **self._inline(),
        }

    def upload_item(self) -> dict[str, Any]:
        return {
            "attachmentType": "file",
            "name": self.name,
            "size": len(self.content),
            "contentType": self.content_type,
            **self._inline(),
        }


@dataclass(frozen=True, slots=True)
class GraphMessage:
    """A stored email as Graph's JSON message, with the attachments that must be uploaded apart."""

    message: dict[str, Any]
    attachments: tuple[FileAttachment, ...]

    @property
    def needs_draft(self) -> bool:
        if any(len(a.content) >= SMALL_ATTACHMENT_LIMIT for a in self.attachments):
            return True
        whole = {"message": self._with_attachments(), "saveToSentItems": False}
        return len(json.dumps(whole).encode()) >= REQUEST_LIMIT

    def _with_attachments(self) -> dict[str, Any]:
        if not self.attachments:
            return dict(self.message)
        return {**self.message, "attachments": [a.to_json() for a in self.attachments]}

    def send_mail_body(self, *, save_to_sent_items: bool) -> dict[str, Any]:
        if self.needs_draft:
            raise ValueError("the message is too large for one sendMail request; use a draft")
        body: dict[str, Any] = {"message": self._with_attachments()}
        if not save_to_sent_items:
            body["saveToSentItems"] = False  # Graph: specify it only when false
        return body

    def draft_body(self) -> dict[str, Any]:
        return dict(self.message)


def _recipient(address: str, name: str = "") -> dict[str, Any]:
    box: dict[str, str] = {"address": address}
    if name:
        box["name"] = _line(name)
    return {"emailAddress": box}


def _addresses(msg: EmailMessage, header: str) -> list[Address]:
    value = msg.get(header)
    if value is None:
        return []
    return [a for a in getattr(value, "addresses", ()) if a.addr_spec]


def graph_message(raw: bytes, *, recipients: Sequence[str]) -> GraphMessage:
    """Convert stored message bytes to Graph's JSON; ``recipients`` are those still to send to."""
    if not recipients:
        raise ValueError("no recipient left to send to")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        senders = _addresses(msg, "From")
    except (ValueError, TypeError, IndexError) as exc:
        raise MessageError(f"the stored message cannot be read: {exc}") from None
    if not senders:
        raise MessageError("the stored message has no From address")

    wanted = {r.lower(): r for r in recipients}
    taken: set[str] = set()

    def pick(header: str) -> list[dict[str, Any]]:
        out = []
        for a in _addresses(msg, header):
            key = a.addr_spec.lower()
            if key in wanted and key not in taken:
                taken.add(key)
                out.append(_recipient(a.addr_spec, a.display_name))
        return out

    message: dict[str, Any] = {"subject": _line(str(msg.get("Subject", "")))}
    body_parts, attachments = _parts(msg)
    message["body"] = body_parts
    sender = senders[0]
    message["from"] = _recipient(sender.addr_spec, sender.display_name)
    for field, header in (("toRecipients", "To"), ("ccRecipients", "Cc")):
        listed = pick(header)
        if listed:
            message[field] = listed
    bcc = [_recipient(r) for key, r in wanted.items() if key not in taken]
    if bcc:
        message["bccRecipients"] = bcc
    reply_to = [_recipient(a.addr_spec, a.display_name) for a in _addresses(msg, "Reply-To")]
    if reply_to:
        message["replyTo"] = reply_to
    if msg.get("Message-ID"):
        message["internetMessageId"] = _line(str(msg["Message-ID"]))
    custom = [
        {"name": name, "value": _line(str(value))}
        for name, value in msg.items()
        if name.lower().startswith("x-")
    ]
    if custom:
        message["internetMessageHeaders"] = custom
    return GraphMessage(message=message, attachments=tuple(attachments))


def _parts(msg: EmailMessage) -> tuple[dict[str, str], list[FileAttachment]]:
    body = msg.get_body(preferencelist=("html", "plain"))
    content = {"contentType": "Text", "content": ""}
    if body is not None:
        html = body.get_content_type() == "text/html"
        content = {"contentType": "HTML" if html else "Text", "content": body.get_content()}
    bodies = {id(body)} if body is not None else set()
    # The plain alternative of an HTML body is part of the body, not an attachment.
    alternative = msg.get_body(preferencelist=("plain",))
    if alternative is not None and alternative.get("Content-Disposition") is None:
        bodies.add(id(alternative))
    attachments = [
        _attachment(part, related=parent == "multipart/related")
        for part, parent in _leaves(msg, None)
        if id(part) not in bodies and _is_attachment(part, parent)
    ]
    return content, attachments


def _leaves(part: Message, parent: str | None) -> list[tuple[Message, str | None]]:
    if part.get_content_maintype() == "multipart":
        out: list[tuple[Message, str | None]] = []
        for child in part.get_payload():
            assert isinstance(child, Message)
            out.extend(_leaves(child, part.get_content_type()))
        return out
    return [(part, parent)]


def _is_attachment(part: Message, parent: str | None) -> bool:
    disposition = part.get_content_disposition()
    return (
        disposition in ("attachment", "inline")
        or part.get_filename() is not None
        or part.get("Content-ID") is not None
        or part.get_content_type() == "message/rfc822"
        or part.get_content_maintype() not in ("text", "multipart")
        or parent == "multipart/related"
    )


def _attachment(part: Message, *, related: bool) -> FileAttachment:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        content = first.as_bytes() if isinstance(first, Message) else part.as_bytes()
        name = part.get_filename() or "message.eml"
    else:
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        name = part.get_filename() or f"attachment.{part.get_content_subtype() or 'bin'}"
    content_id = part.get("Content-ID")
    cid = _line(str(content_id)).strip("<>") if content_id else None
    inline = part.get_content_disposition() == "inline" or (related and cid is not None)
    return FileAttachment(
        name=_line(name),
        content_type=content_type,
        content=content,
        is_inline=inline,
        content_id=cid if inline else None,
    )
