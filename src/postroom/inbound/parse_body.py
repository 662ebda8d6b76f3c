"""The body of received mail: its text, its HTML and its attachments, within bounds.

The MIME tree is walked with an explicit stack (no recursion), to a bounded depth and
part count; attachments are bounded in number and total size. An attached message
(message/rfc822) is kept whole as a ``.eml`` file, never expanded.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import re
import unicodedata
from dataclasses import dataclass, field

from postroom.inbound.parse_headers import decode_words
from postroom.inbound.parse_text import Defects, decode_bytes, line, undo_surrogateescape

MAX_DEPTH = 10
MAX_PARTS = 2_000
MAX_ATTACHMENTS = 100
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_FILENAME = 150
MAX_TEXT = 100_000
MAX_HTML = 2 * 1024 * 1024

# Extensions for parts without a file name (mimetypes would read system files).
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/feedback-report": ".txt",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
}
_FILENAME_BAD = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,80}\?[bBqQ]\?[^?\s]*\?=")
_ESCAPED = re.compile("[\udc80-\udcff]")
_EMBEDDED = {"message/rfc822", "message/global"}
# message/* parts the parser splits into header blocks: kept as text, not walked.
_REPORT_PARTS = {"message/delivery-status", "message/disposition-notification"}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file found in the mail, before it becomes a MailAttachment."""

    name: str
    content_type: str
    content: bytes


@dataclass(slots=True)
class Body:
    """What the walk found: the first text and HTML parts, and the attachments."""

    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    _size: int = 0
    _skipped: int = 0
    _oversize: int = 0

    def room(self) -> bool:
        """True while another attachment may be kept (else it is counted as left out)."""
        if len(self.attachments) < MAX_ATTACHMENTS:
            return True
        self._skipped += 1
        return False

    def keep(self, attachment: Attachment) -> None:
        """Add ``attachment`` unless it passes the count or size bound (counted then)."""
        if len(self.attachments) >= MAX_ATTACHMENTS:
            self._skipped += 1
        elif self._size + len(attachment.content) > MAX_ATTACHMENT_BYTES:
            self._oversize += 1
        else:
            self._size += len(attachment.content)
            self.attachments.append(attachment)

    def note_bounds(self, defects: Defects) -> None:
        """Say which attachments were left out."""
        if self._skipped:
            total = len(self.attachments) + self._skipped + self._oversize
            defects.add(f"{total:,} attachments: kept the first {MAX_ATTACHMENTS}")
        if self._oversize:
            defects.add(
                f"{self._oversize} attachments left out: together they pass "
                f"{MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB"
            )


def walk(message: email.message.Message, defects: Defects) -> Body:
    """The text, HTML and attachments of ``message``, walking its parts in order."""
    found = Body()
    stack: list[tuple[email.message.Message, int]] = [(message, 0)]
    walked = 0
    deep = 0
    while stack:
        part, depth = stack.pop()
        walked += 1
        if walked > MAX_PARTS:
            defects.add(f"more than {MAX_PARTS:,} MIME parts: the rest were not read")
            break
        ctype = _content_type(part, defects)
        if len(found.content_types) < 50:
            found.content_types.append(ctype)
        if ctype in _EMBEDDED:
            if found.room():
                name = _filename(part, ctype, found, defects)
                found.keep(Attachment(name, ctype, _embedded(part)))
        elif ctype in _REPORT_PARTS or (part.is_multipart() and not ctype.startswith("multipart/")):
            if found.room():
                name = _filename(part, ctype, found, defects)
                found.keep(Attachment(name, ctype, _report_body(part)))
        elif part.is_multipart():
            children = part.get_payload()
            if depth >= MAX_DEPTH:
                deep += 1
                continue
            if isinstance(children, list):
                stack.extend(
                    (child, depth + 1)
                    for child in reversed(children)
                    if isinstance(child, email.message.Message)
                )
        else:
            _leaf(part, ctype, found, defects)
    if deep:
        defects.add(f"MIME parts nested more than {MAX_DEPTH} levels deep were not read")
    found.note_bounds(defects)
    return found


def _leaf(part: email.message.Message, ctype: str, found: Body, defects: Defects) -> None:
    disposition = _disposition(part)
    named = _raw_filename(part, defects) is not None
    inline_text = disposition != "attachment" and not named
    if ctype == "text/plain" and inline_text and found.text is None:
        found.text = _decoded(part, "the text part", MAX_TEXT * 2, defects)
        return
    if ctype == "text/html" and inline_text and found.html is None:
        html = _decoded(part, "the HTML part", MAX_HTML + 1, defects)
        if len(html) > MAX_HTML:
            defects.add(f"the HTML part is longer than {MAX_HTML:,} characters: its end was cut")
            html = html[:MAX_HTML]
        found.html = html
        return
    if found.room():
        name = _filename(part, ctype, found, defects)
        found.keep(Attachment(name, ctype, _payload(part, defects)))


def _content_type(part: email.message.Message, defects: Defects) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:
        defects.add("a Content-Type header could not be read: the part is kept as a file")
        return "application/octet-stream"
    ctype = line(ctype, limit=100).lower()
    return ctype if "/" in ctype else "application/octet-stream"


def _disposition(part: email.message.Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return "attachment"
    return value.lower() if isinstance(value, str) else None


def _raw_filename(part: email.message.Message, defects: Defects) -> str | None:
    view = _params_view(part, defects)
    try:
        name = view.get_filename()
    except Exception:
        return None
    return name if isinstance(name, str) else None


def _params_view(part: email.message.Message, defects: Defects) -> email.message.Message:
    """``part``, or a copy of its MIME headers with 8-bit bytes decoded to read parameters.

    compat32 hands a value holding raw 8-bit bytes back as an encoded Header whose text
    has lost them ("J\ufffd\ufffdrg.pdf"); the raw value still has them.
    """
    raw = [
        (name, value)
        for name, value in part.raw_items()
        if name.lower() in ("content-type", "content-disposition") and isinstance(value, str)
    ]
    if not any(_ESCAPED.search(value) for _, value in raw):
        return part
    view = email.message.Message()
    for name, value in raw:
        view[name] = undo_surrogateescape(value, what="a file name", defects=defects)
    return view


def _filename(part: email.message.Message, ctype: str, found: Body, defects: Defects) -> str:
    """A file name safe to store: no directories, no controls, bounded, never empty."""
    name = _raw_filename(part, defects) or ""
    if _ENCODED_WORD.search(name):
        # Not allowed in a parameter by RFC 2047, but what many mailers write.
        name = decode_words(name, what="an attachment's name", defects=defects)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _FILENAME_BAD.sub("", name)
    # Format characters (bidirectional overrides and isolates, marks, zero-width joiners)
    # change how a name is shown, not what it is: "\u202egpj.exe" would read as "exe.jpg".
    name = "".join(c for c in name if unicodedata.category(c) != "Cf")
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME:
        _, dot, extension = name.rpartition(".")
        suffix = f".{extension}" if dot and 0 < len(extension) <= 20 else ""
        name = name[: MAX_FILENAME - len(suffix)].rstrip() + suffix
    if not name:
        number = len(found.attachments) + 1
        name = f"attachment-{number}{_EXTENSIONS.get(ctype, '.bin')}"
    return name


def _payload(part: email.message.Message, defects: Defects) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.add("a part's transfer encoding could not be decoded: kept as written")
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _decoded(part: email.message.Message, what: str, limit: int, defects: Defects) -> str:
    data = _payload(part, defects)
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
        defects.add(f"{what} has an unreadable charset parameter: read as UTF-8")
    if len(data) > limit * 4:
        data = data[: limit * 4]  # no character takes more than 4 bytes in any mail charset
    return decode_bytes(data, charset, what=what, defects=defects)[:limit]


def _embedded(part: email.message.Message) -> bytes:
    """The attached message as bytes (the first payload of a message/rfc822 part)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return _as_bytes(payload[0])
    return _as_bytes_body(part)


def _report_body(part: email.message.Message) -> bytes:
    """A report part's body: the parser split it into header blocks; joined again."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _as_bytes(part)
    return b"".join(
        _as_bytes(block) for block in payload if isinstance(block, email.message.Message)
    )


def _as_bytes(part: email.message.Message) -> bytes:
    """``part`` written out again (the parser keeps no offsets into the original)."""
    try:
        return part.as_bytes(policy=_REWRITE)
    except Exception:
        return _as_bytes_body(part)


def _as_bytes_body(part: email.message.Message) -> bytes:
    try:
        payload = part.get_payload()
        text = payload if isinstance(payload, str) else str(part)
        return text.encode("utf-8", "surrogateescape")
    except Exception:
        return b""


# Written out as received: no refolding of long lines, 8-bit bytes kept.
_REWRITE = email.policy.compat32.clone(max_line_length=0, linesep="\r\n")
