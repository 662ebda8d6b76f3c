"""Building RFC 5322 message bytes from a rendered email: pure, no I/O.

The standard library's header classes refuse CR and LF in header values; on top of
that, every address and display name is validated before it gets here and the
subject is folded to one line, so no input can add a header or a recipient.
The stdlib decodes RFC 2047 encoded words in the values it is given (``=?utf-8?q?=0D=0A?=``
is a line break) and, before CPython 3.11.10 and 3.12.5 (CVE-2024-6923), writes the
result as it is; so every header is checked once more, as written and as a reader
decodes it, before the message leaves here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import errors as email_errors
from email import policy
from email.header import decode_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime

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
    """The message as CRLF-terminated bytes, ready for SMTP DATA."""
    if not email.to and not email.cc and not email.bcc:
        raise MessageError("the email has no recipient")
    msg = EmailMessage(policy=_SMTP)
    try:
        msg["From"] = email.sender.header()
        if email.to:
            msg["To"] = [box.header() for box in email.to]
        if email.cc:
            msg["Cc"] = [box.header() for box in email.cc]
        # Bcc recipients are only in the envelope, never in the headers.
        for box in email.bcc:
            box.header()
        if email.reply_to:
            msg["Reply-To"] = Mailbox(email.reply_to).header()
        msg["Subject"] = single_line(email.subject)
        msg["Date"] = format_datetime(email.date)
        msg["Message-ID"] = email.message_id
        for name, value in email.headers:
            msg[name] = single_line(value)
        msg.set_content(email.text, subtype="plain", cte="quoted-printable")
        msg.add_alternative(email.html, subtype="html", cte="quoted-printable")
        for item in email.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            msg.add_attachment(
                item.content,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=single_line(item.filename) or "attachment",
            )
        # The stdlib repeats MIME-Version on parts it creates; only the top level needs it.
        for part in msg.walk():
            if part is not msg:
                del part["MIME-Version"]
        _check_folded_headers(msg)
        raw = msg.as_bytes(policy=_SMTP)
        _check_decoded_headers(raw)
        return raw
    except MessageError:
        raise
    except (ValueError, TypeError, email_errors.MessageError) as exc:
        raise MessageError(f"the email cannot be built safely: {exc}") from None


def _check_folded_headers(msg: EmailMessage) -> None:
    """Refuse a header that would come out as more than one header, or with controls."""
    for part in msg.walk():
        for name, value in part.items():
            lines = _SMTP.fold_binary(name, value).removesuffix(b"\r\n").split(b"\r\n")
            continued = all(line[:1] in (b" ", b"\t") for line in lines[1:])
            if not continued or any(_UNSAFE_IN_HEADER.search(line) for line in lines):
                raise _unsafe_header(name)
        # A file name may be written percent-encoded (RFC 2231): check it as decoded.
        filename = part.get_filename()
        if filename is not None and _UNSAFE_DECODED.search(filename):
            raise _unsafe_header("Content-Disposition")


def _check_decoded_headers(raw: bytes) -> None:
    """Refuse a header that a reader would decode to a line break or control character."""
    for name, value in BytesHeaderParser(policy=policy.compat32).parsebytes(raw).items():
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
    return MessageError(
        f"the {name} header would contain a line break or control character "
        "(an RFC 2047 encoded word in a subject, name or file name?)"
    )
