"""Building RFC 5322 message bytes from a rendered email: pure, no I/O.

The bytes are written by :mod:`postroom.correspondence.wire`. Every address and display
name is validated before it gets there and the subject is folded to one line, so no
input can add a header or a recipient. An RFC 2047 encoded word in a value
(``=?utf-8?q?=0D=0A?=`` is a line break) is decoded as a reader would and refused when
it hides a control; and every header is checked once more, as written and as a reader
decodes it, before the message leaves here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.header import decode_header
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from email.utils import format_datetime

from postroom.correspondence import wire
from postroom.errors import MessageError
from postroom.validation import check_address, check_display_name, single_line

_SMTP = policy.SMTP.clone(raise_on_defect=True)
# In a folded header, a line may only end as a continuation; no other control characters.
_UNSAFE_IN_HEADER = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_UNSAFE_DECODED = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """An address with an optional display name."""

    address: str
    name: str = ""

    def header(self) -> Address:
        try:
            name = check_display_name(self.name, what=f"display name of {self.address}")
            addr = check_address(self.address)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        username, _, domain = addr.rpartition("@")
        return Address(display_name=name, username=username, domain=domain)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to an email."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class InlinePart:
    """An image the HTML shows as ``cid:<content_id>``: sent beside it, in multipart/related."""

    content_id: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """Everything needed to build one message."""

    sender: Mailbox
    to: tuple[Mailbox, ...]
    subject: str
    html: str
    text: str
    message_id: str
    date: datetime
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=())
    inline: tuple[InlinePart, ...] = ()

    @property
    def envelope_recipients(self) -> list[str]:
        """Every recipient once, in order: To, then Cc, then Bcc."""
        seen: dict[str, str] = {}
        for box in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(box.address.lower(), box.address)
        return list(seen.values())


def new_message_id(sender_address: str) -> str:
    """A globally unique Message-ID in the sender's domain."""
    domain = sender_address.rpartition("@")[2] or "postroom.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def build_message(email: OutgoingEmail) -> bytes:
    """The message as CRLF-terminated, 7-bit bytes, ready for SMTP DATA."""
    if not email.to and not email.cc and not email.bcc:
        raise MessageError("the email has no recipient")
    # Every address and display name is validated; Bcc only for that, never written.
    sender = _box(email.sender)
    to, cc = [_box(b) for b in email.to], [_box(b) for b in email.cc]
    for box in email.bcc:
        _box(box)
    head = [wire.addresses("From", [sender])]
    if to:
        head.append(wire.addresses("To", to))
    if cc:
        head.append(wire.addresses("Cc", cc))
    if email.reply_to:
        head.append(wire.addresses("Reply-To", [_box(Mailbox(email.reply_to))]))
    head.append(wire.unstructured("Subject", single_line(email.subject)))
    head.append(b"Date: " + format_datetime(email.date).encode("ascii"))
    if not _MESSAGE_ID.fullmatch(email.message_id):
        raise MessageError(f"{email.message_id!r} is not a Message-ID")
    head.append(b"Message-ID: " + email.message_id.encode("ascii"))
    for name, value in email.headers:
        head.append(wire.unstructured(name, single_line(value)))
    head.append(b"MIME-Version: 1.0")
    alternative = wire.new_boundary()
    html = _text_part("html", email.html)
    if email.inline:
        # The HTML and its images belong together (RFC 2387), as one of the alternatives:
        # a reader that shows the text part never sees the images as attachments.
        related = wire.new_boundary()
        html = (
            b'Content-Type: multipart/related; type="text/html";\r\n boundary="'
            + related
            + b'"'
            + CRLF
            + CRLF
            + _multipart(related, [html, *(_inline_part(item) for item in email.inline)])
        )
    body = _multipart(alternative, [_text_part("plain", email.text), html])
    if email.attachments:
        mixed = wire.new_boundary()
        parts = [_content_type_alternative(alternative) + CRLF + CRLF + body]
        parts.extend(_attachment_part(item) for item in email.attachments)
        head.append(b'Content-Type: multipart/mixed;\r\n boundary="' + mixed + b'"')
        body = _multipart(mixed, parts)
    else:
        head.append(_content_type_alternative(alternative))
    # Only the header block is checked: the body is ours (QP and base64) and long.
    header_block = CRLF.join(head)
    _check_header_lines(header_block)
    _check_decoded_headers(header_block)
    return header_block + CRLF + CRLF + body


CRLF = b"\r\n"
_MESSAGE_ID = re.compile(r"<[!-=?-~]+@[!-=?-~]+>")


def _box(box: Mailbox) -> tuple[str, str]:
    try:
        name = check_display_name(box.name, what=f"display name of {box.address}")
        address = check_address(box.address)
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    return name, address


def _content_type_alternative(boundary: bytes) -> bytes:
    return b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"'


def _text_part(subtype: str, text: str) -> bytes:
    if not text.endswith(("\n", "\r")):
        text += "\n"  # a text part ends with a line break, as the standard library's do
    return CRLF.join(
        [
            f'Content-Type: text/{subtype}; charset="utf-8"'.encode(),
            b"Content-Transfer-Encoding: quoted-printable",
            b"",
            wire.quoted_printable(text),
        ]
    )


def _attachment_part(item: Attachment) -> bytes:
    maintype, _, subtype = item.content_type.partition("/")
    content_type = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    if not _MIME_TYPE.fullmatch(content_type):
        raise MessageError(f"{item.content_type!r} is not a MIME type")
    filename = single_line(item.filename) or "attachment"
    return _file_part(content_type, "attachment", filename, item.content)


def _inline_part(item: InlinePart) -> bytes:
    if not _CONTENT_ID.fullmatch(item.content_id):
        raise MessageError(f"{item.content_id!r} is not a content id")
    if not _MIME_TYPE.fullmatch(item.content_type) or not item.content_type.startswith("image/"):
        raise MessageError(f"{item.content_type!r} is not an image type")
    filename = single_line(item.filename) or "image"
    content_id = f"Content-ID: <{item.content_id}>".encode()
    return _file_part(item.content_type, "inline", filename, item.content, content_id)


def _file_part(
    content_type: str, disposition: str, filename: str, content: bytes, *extra: bytes
) -> bytes:
    """A base64 part with its checked type, disposition and file name (RFC 2231)."""
    folded = wire.fold(
        "Content-Disposition",
        [f"{disposition};", *[p + ";" for p in wire.filename_parameters(filename)]],
        separator=" ",
    ).removesuffix(b";")
    return CRLF.join(
        [
            f"Content-Type: {content_type}".encode(),
            b"Content-Transfer-Encoding: base64",
            *extra,
            folded,
            b"",
            wire.base64_lines(content),
        ]
    )


_CONTENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME_TYPE = re.compile(f"{_MIME_NAME}/{_MIME_NAME}")


def _multipart(boundary: bytes, parts: list[bytes]) -> bytes:
    out = []
    for part in parts:
        # The CRLF before the next delimiter belongs to it, not to the part (RFC 2046).
        out.append(b"--" + boundary + CRLF + part + CRLF)
    out.append(b"--" + boundary + b"--" + CRLF)
    return b"".join(out)


def _check_header_lines(head: bytes) -> None:
    """Every header line starts a header or continues one; nothing else is in them."""
    for line in head.split(CRLF):
        if _UNSAFE_IN_HEADER.search(line) or not (line[:1] in (b" ", b"\t") or b":" in line):
            raise wire.unsafe_header(line.partition(b":")[0].decode("ascii", "replace"))


def _check_decoded_headers(head: bytes) -> None:
    """Refuse a header that a reader would decode to a line break or control character."""
    if b"=?" not in head:
        return  # no encoded word: a reader sees the lines that _check_header_lines passed
    for name, value in BytesHeaderParser(policy=policy.compat32).parsebytes(head + CRLF).items():
        unfolded = re.sub(r"\r\n(?=[ \t])", "", str(value))
        decoded = []
        for chunk, charset in decode_header(unfolded):
            if isinstance(chunk, str):
                decoded.append(chunk)
                continue
            try:
                decoded.append(chunk.decode(charset or "ascii", "replace"))
            except LookupError:
                decoded.append(chunk.decode("latin-1"))
        if _UNSAFE_DECODED.search("".join(decoded)):
            raise _unsafe_header(name)


def _unsafe_header(name: str) -> MessageError:
    return wire.unsafe_header(name)
