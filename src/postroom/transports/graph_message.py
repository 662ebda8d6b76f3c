"""A stored email as Microsoft Graph's JSON message: pure, no I/O.

The outbox keeps RFC 5322 bytes; ``sendMail`` takes a JSON message
(https://learn.microsoft.com/graph/api/user-sendmail and
https://learn.microsoft.com/graph/api/resources/message). Graph sets only custom
headers whose names start with ``x-``: From, To, Cc, Reply-To and Message-ID become
message fields, Bcc comes from the envelope, every ``X-`` header becomes an
``internetMessageHeaders`` entry and the others (Date, MIME-Version...) are Graph's own.
An attachment of 3 MB or more needs an upload session and a request must stay under 4 MB
(https://learn.microsoft.com/graph/outlook-large-attachments): a message over either
limit goes as a draft, its attachments added one by one. Every header value comes out
on one line: an RFC 2047 encoded word may decode to a line break, and neither Graph nor
the recipients may see a header split in two.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import errors as email_errors
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from typing import Any

from postroom.errors import MessageError
from postroom.validation import single_line

# Graph: attachments of 3 MB or more need an upload session.
SMALL_ATTACHMENT_LIMIT = 3 * 1024 * 1024
# Graph: a sendMail JSON request must stay under 4 MB.
REQUEST_LIMIT = 4 * 1024 * 1024
# Graph refuses more custom headers (InvalidInternetMessageHeaderCollection).
MAX_CUSTOM_HEADERS = 5

# An attached message is written back as it was stored: CRLF, long lines not refolded.
_EML = policy.SMTP.clone(refold_source="none")
_NAMES = {"message/rfc822": "message.eml", "text/plain": "attachment.txt"}

_Leaf = tuple[Message, tuple[Message, ...]]  # a non-multipart part and its ancestors


@dataclass(frozen=True, slots=True)
class FileAttachment:
    """One attachment of the message, as Graph takes it."""

    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str | None = None

    def _inline_fields(self) -> dict[str, Any]:
        if not self.is_inline:
            return {}
        return {"isInline": True, **({"contentId": self.content_id} if self.content_id else {})}

    def to_json(self) -> dict[str, Any]:
        """The fileAttachment resource, content included (for sendMail or a draft)."""
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.content).decode("ascii"),
            **self._inline_fields(),
        }

    def upload_item(self) -> dict[str, Any]:
        """The AttachmentItem that opens an upload session for this attachment."""
        return {
            "attachmentType": "file",
            "name": self.name,
            "size": len(self.content),
            "contentType": self.content_type,
            **self._inline_fields(),
        }


@dataclass(frozen=True, slots=True)
class GraphMessage:
    """A stored email as Graph's JSON message, with the attachments that must be uploaded apart."""

    message: dict[str, Any]
    attachments: tuple[FileAttachment, ...]

    @property
    def needs_draft(self) -> bool:
        """Whether one sendMail request would be refused as too large."""
        if any(len(item.content) >= SMALL_ATTACHMENT_LIMIT for item in self.attachments):
            return True
        # Measured as the largest form a client may send: non-ASCII escaped as \uXXXX,
        # separators with spaces, saveToSentItems included. ASCII, so chars == bytes.
        request = {"message": self._whole(), "saveToSentItems": False}
        return len(json.dumps(request)) >= REQUEST_LIMIT

    def send_mail_body(self, *, save_to_sent_items: bool) -> dict[str, Any]:
        """The sendMail request body, every attachment inline; ValueError if too large."""
        if self.needs_draft:
            raise ValueError("the message is too large for one sendMail request: send a draft")
        body: dict[str, Any] = {"message": self._whole()}
        if not save_to_sent_items:
            body["saveToSentItems"] = False  # Graph: specify it only when it is false
        return body

    def draft_body(self) -> dict[str, Any]:
        """The message for creating a draft; its attachments are added afterwards."""
        return copy.deepcopy(self.message)

    def _whole(self) -> dict[str, Any]:
        message = copy.deepcopy(self.message)
        if self.attachments:
            message["attachments"] = [item.to_json() for item in self.attachments]
        return message


def graph_message(raw: bytes, *, recipients: Sequence[str]) -> GraphMessage:
    """Convert stored message bytes to Graph's JSON.

    ``recipients`` are the envelope recipients still to send to.
    """
    if not recipients:
        raise ValueError("the message has no recipient left to send to")
    wanted: dict[str, str] = {}
    for address in recipients:
        clean = address.strip()
        if not clean or single_line(clean) != clean:
            raise MessageError(f"envelope recipient {address!r} is not a one-line address")
        wanted.setdefault(clean.lower(), clean)
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        return _convert(msg, wanted)
    except MessageError:
        raise
    except (ValueError, LookupError, TypeError, email_errors.MessageError) as exc:
        raise MessageError(f"the stored message cannot be read: {exc}") from None


def _convert(msg: EmailMessage, wanted: dict[str, str]) -> GraphMessage:
    senders = [box for box in _mailboxes(msg, "From") if "@" in box[1]]
    if not senders:
        raise MessageError("the stored message has no From address")
    # A retry sends only to the recipients that have not accepted the message yet.
    listed: dict[str, list[dict[str, Any]]] = {"To": [], "Cc": []}
    seen: set[str] = set()
    for header, boxes in listed.items():
        for name, address in _mailboxes(msg, header):
            if address.lower() in wanted and address.lower() not in seen:
                seen.add(address.lower())
                boxes.append(_recipient(name, address))
    chosen = msg.get_body(preferencelist=("html", "plain"))
    fields: dict[str, Any] = {
        "subject": _text(msg.get("Subject", "")),
        "body": _body(chosen),
        "from": _recipient(*senders[0]),
        "toRecipients": listed["To"],
        "ccRecipients": listed["Cc"],
        "bccRecipients": [_recipient("", a) for key, a in wanted.items() if key not in seen],
        "replyTo": [_recipient(*box) for box in _mailboxes(msg, "Reply-To")],
        "internetMessageId": _text(msg["Message-ID"]) if "Message-ID" in msg else None,
        "internetMessageHeaders": _custom_headers(msg),
    }
    leaves = list(_leaves(msg, ()))
    bodies = _body_parts(chosen, leaves)
    attachments = tuple(
        _attachment(part, ancestors)
        for part, ancestors in leaves
        if not any(part is b for b in bodies) and _is_attachment(part)
    )
    # Empty lists and absent fields are left out, not sent empty or null.
    message = {key: value for key, value in fields.items() if value not in ([], None)}
    return GraphMessage(message=message, attachments=attachments)


def _custom_headers(msg: Message) -> list[dict[str, str]]:
    headers = [
        {"name": name, "value": _text(policy.default.header_fetch_parse(name, value))}
        for name, value in msg.raw_items()  # parses only the headers it keeps
        if name.lower().startswith("x-")
    ]
    # Graph refuses more than five; Postroom's own (the case id) are kept first.
    headers.sort(key=lambda h: not h["name"].lower().startswith("x-postroom-"))
    return headers[:MAX_CUSTOM_HEADERS]


def _leaves(part: Message, ancestors: tuple[Message, ...]) -> Iterator[_Leaf]:
    payload = part.get_payload()
    if part.get_content_maintype() == "multipart" and isinstance(payload, list):
        for child in payload:
            if isinstance(child, Message):
                yield from _leaves(child, (*ancestors, part))
    else:
        yield part, ancestors


def _body_parts(chosen: MIMEPart | None, leaves: list[_Leaf]) -> list[Message]:
    """The chosen body and the other text versions of it in its multipart/alternative."""
    if chosen is None:
        return []
    ancestors = next((up for part, up in leaves if part is chosen), ())
    alternatives = [up for up in ancestors if up.get_content_type() == "multipart/alternative"]
    return [chosen] + [
        part
        for part, up in leaves
        if alternatives
        and alternatives[-1] in up
        and part.get_content_type() in ("text/plain", "text/html")
        and part.get_filename() is None
        and part.get_content_disposition() != "attachment"
    ]


def _is_attachment(part: Message) -> bool:
    return (
        part.get_filename() is not None
        or part.get_content_disposition() in ("attachment", "inline")
        or part.get("Content-ID") is not None
        # Non-text content (a PDF, an attached message...) is never dropped silently.
        or part.get_content_maintype() not in ("text", "multipart")
    )


def _attachment(part: Message, ancestors: tuple[Message, ...]) -> FileAttachment:
    content_type = part.get_content_type()
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822: the attached message, as stored
        content = b"".join(m.as_bytes(policy=_EML) for m in payload if isinstance(m, Message))
    else:
        decoded = part.get_payload(decode=True)
        content = decoded if isinstance(decoded, bytes) else b""
    subtype = part.get_content_subtype()
    short = subtype if subtype.isalnum() and len(subtype) <= 5 else "bin"
    filename = part.get_filename()
    name = _text(filename) if filename is not None else ""
    header = part.get("Content-ID")
    content_id = (_text(header).strip("<>") or None) if header is not None else None
    related = bool(ancestors) and ancestors[-1].get_content_type() == "multipart/related"
    return FileAttachment(
        name=name or _NAMES.get(content_type, f"attachment.{short}"),
        content_type=content_type,
        content=content,
        is_inline=part.get_content_disposition() == "inline" or (related and bool(content_id)),
        content_id=content_id,
    )


def _body(part: MIMEPart | None) -> dict[str, str]:
    if part is None:
        return {"contentType": "Text", "content": ""}
    try:
        content = str(part.get_content())
    except LookupError:  # an unknown charset: UTF-8 is the likeliest, and never fails
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    html = part.get_content_type() == "text/html"
    return {"contentType": "HTML" if html else "Text", "content": content}


def _mailboxes(msg: EmailMessage, header: str) -> list[tuple[str, str]]:
    """(display name, address) of each mailbox in the ``header`` headers, one line each."""
    try:
        boxes = [box for value in msg.get_all(header, []) for box in value.addresses]
    except (ValueError, AttributeError, IndexError) as exc:
        # The stdlib refuses a name that decodes to a line break (build_message never
        # writes one), and trips over some odd ones (an unquoted "." as a display name);
        # a lenient reading could take the wrong address, so refuse too.
        raise MessageError(f"the {header} header cannot be read safely: {exc}") from None
    return [(_text(box.display_name), _text(box.addr_spec)) for box in boxes if box.addr_spec]


def _recipient(name: str, address: str) -> dict[str, Any]:
    box = {"address": address, **({"name": name} if name else {})}
    return {"emailAddress": box}


def _text(value: object) -> str:
    """A header value on one line, raw 8-bit bytes read as UTF-8 (RFC 6532)."""
    text = str(value)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        text = text.encode("utf-8", "replace").decode("utf-8")
    return single_line(text)


_SEALED = (b"multipart/signed", b"application/pkcs7-mime", b"application/x-pkcs7-mime")


def is_sealed(raw: bytes) -> bool:
    """Whether the message is signed or encrypted (S/MIME): only MIME keeps it intact."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\r\n\r\n")
    content_type = str(parsed.get("Content-Type", "")).strip().lower().encode()
    return content_type.startswith(_SEALED)


def header_addresses(raw: bytes, names: Sequence[str]) -> list[str]:
    """The addresses in the ``names`` headers of ``raw``."""
    head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    values = [str(v) for name in names for v in parsed.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]
