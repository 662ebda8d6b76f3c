"""Received mail read into a :class:`ParsedMail`: pure, bounded, and never raising.

A stranger's bytes decide what arrives, so every field is bounded and every part that
does not parse becomes a defect in words; the mail is kept as far as it parses. The
structure is the standard library parser's; header values are decoded one by one
(``parse_headers``), the body walked
without recursion (``parse_body``), the reply told from its quoted history
(``parse_reply``) and automatic mail recognised (``automatic``).
"""

from __future__ import annotations

import email.message
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from postroom.inbound import automatic as auto
from postroom.inbound import parse_headers as hdr
from postroom.inbound.parse_body import MAX_TEXT, Body, walk
from postroom.inbound.parse_guard import read_message
from postroom.inbound.parse_html import html_text
from postroom.inbound.parse_reply import reply_text
from postroom.inbound.parse_text import Defects, body, no_surrogates

# HTML turned into text when there is no text part: its start only (the reply is at
# the top, and the text is bounded anyway).
MAX_HTML_FOR_TEXT = 500_000
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """A file carried by a received mail (inline images and attached messages included)."""

    name: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What Postroom reads from a received mail; every field bounded, nothing trusted."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_address: str | None
    from_name: str
    recipients: tuple[str, ...]
    sent_at: datetime | None
    text: str
    full_text: str
    html: str | None
    attachments: tuple[MailAttachment, ...]
    automatic: str | None
    bounce: bool
    defects: tuple[str, ...]


def parse_mail(raw: bytes) -> ParsedMail:
    """``raw`` read as far as it parses; never raises, whatever the bytes."""
    defects = Defects()
    try:
        return _parse(raw, defects)
    except Exception as exc:  # the last line of defence: a stranger's bytes must not crash us
        defects.add(f"the message could not be read ({type(exc).__name__}): kept as raw bytes")
    return _unreadable(defects)


def dedupe_key(mail: ParsedMail, raw: bytes) -> str:
    """The key that makes a second delivery of the same mail a duplicate."""
    if mail.message_id:
        return "mid:" + hashlib.sha256(mail.message_id.encode("utf-8", "replace")).hexdigest()
    return "raw:" + hashlib.sha256(raw).hexdigest()


def _parse(raw: bytes, defects: Defects) -> ParsedMail:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    raw = bytes(raw)
    message = read_message(raw, defects)
    for problem in _message_defects(message):
        defects.add(problem)
    headers = hdr.Headers(message.raw_items(), defects)

    def field(what: str, default: _T, read: Callable[[], _T]) -> _T:
        # One field that fails (a bug met by hostile bytes) costs that field only.
        try:
            return read()
        except Exception:
            defects.add(f"the {what} could not be read")
            return default

    subject = field("subject", "", lambda: hdr.subject(headers))
    nobody: tuple[str | None, str, str] = (None, "", "")
    sender = field("sender", nobody, lambda: hdr.sender(headers))
    found = field("body", Body(), lambda: walk(message, defects))
    full_text = field("text", "", lambda: _full_text(found, defects))
    bounce = field(
        "delivery report",
        False,
        lambda: auto.is_bounce(
            headers, sender=sender[2], subject=subject, content_types=found.content_types
        ),
    )
    return ParsedMail(
        message_id=field("Message-ID", None, lambda: hdr.message_id(headers)),
        in_reply_to=field(
            "In-Reply-To", (), lambda: hdr.id_list(headers, "in-reply-to", keep=hdr.MAX_IN_REPLY_TO)
        ),
        references=field(
            "References", (), lambda: hdr.id_list(headers, "references", keep=hdr.MAX_REFERENCES)
        ),
        subject=subject,
        from_address=sender[0],
        from_name=sender[1],
        recipients=field("recipients", (), lambda: hdr.recipients(headers)),
        sent_at=field("Date", None, lambda: hdr.sent_at(headers)),
        text=body(reply_text(full_text, defects), limit=MAX_TEXT),
        full_text=full_text,
        html=no_surrogates(found.html).replace("\x00", "") if found.html is not None else None,
        attachments=tuple(
            MailAttachment(name=a.name, content_type=a.content_type, content=a.content)
            for a in found.attachments
        ),
        automatic=field(
            "automatic-mail headers",
            None,
            lambda: auto.automatic(headers, sender=sender[2], subject=subject, bounce=bounce),
        ),
        bounce=bounce,
        defects=defects.result(),
    )


def _full_text(found: Body, defects: Defects) -> str:
    """The text part, else (also when it is blank) the text of the HTML part; bounded."""
    text = found.text
    if (text is None or not text.strip()) and found.html:
        try:
            text = html_text(found.html[:MAX_HTML_FOR_TEXT])
        except Exception:
            defects.add("the HTML part could not be turned into text")
    if text is None:
        return ""
    if len(text) > MAX_TEXT:
        defects.add(f"the text is longer than {MAX_TEXT:,} characters: its end was cut")
    return body(text, limit=MAX_TEXT)


def _message_defects(message: email.message.Message) -> list[str]:
    """The parser's own defects of every part, in words (bounded)."""
    words: list[str] = []
    stack = [message]
    seen = 0
    while stack and seen < 200:
        part = stack.pop()
        seen += 1
        for defect in getattr(part, "defects", ())[:20]:
            words.append(_DEFECT_WORDS.get(type(defect).__name__, _default_words(defect)))
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, email.message.Message))
    return words


_DEFECT_WORDS = {
    "NoBoundaryInMultipartDefect": "a multipart part declares no boundary",
    "StartBoundaryNotFoundDefect": "a multipart part's boundary never appears",
    "CloseBoundaryNotFoundDefect": "a multipart part is not closed (truncated message?)",
    "FirstHeaderLineIsContinuationDefect": "the first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "an envelope 'From ' line among the headers",
    "MissingHeaderBodySeparatorDefect": "a header line without a colon (or a missing blank line)",
    "MultipartInvariantViolationDefect": "a multipart Content-Type on a part that is not one",
    "InvalidMultipartContentTransferEncodingDefect": "a multipart part with a transfer encoding",
    "UndecodableBytesDefect": "8-bit bytes where only ASCII is allowed",
    "InvalidHeaderDefect": "a header that is not valid",
    "NonPrintableDefect": "a header with control characters",
    "InvalidBase64PaddingDefect": "base64 content with wrong padding",
    "InvalidBase64CharactersDefect": "base64 content with invalid characters",
    "InvalidBase64LengthDefect": "base64 content of an impossible length",
}


def _default_words(defect: object) -> str:
    name = type(defect).__name__.removesuffix("Defect")
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return f"MIME problem: {spaced}"


def _unreadable(defects: Defects) -> ParsedMail:
    """The mail when nothing but its bytes could be kept."""
    return ParsedMail(
        message_id=None,
        in_reply_to=(),
        references=(),
        subject="",
        from_address=None,
        from_name="",
        recipients=(),
        sent_at=None,
        text="",
        full_text="",
        html=None,
        attachments=(),
        automatic=None,
        bounce=False,
        defects=defects.result(),
    )
