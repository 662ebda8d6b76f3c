"""Building RFC 5322 message bytes from a rendered email: pure, no I/O.

The standard library's header classes refuse CR and LF in header values; on top of
that, every address and display name is validated before it gets here and the
subject is folded to one line, so no input can add a header or a recipient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from postroom.errors import MessageError
from postroom.validation import check_address, check_display_name, single_line

_SMTP = policy.SMTP.clone(raise_on_defect=True)


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
    except MessageError:
        raise
    except (ValueError, TypeError) as exc:
        raise MessageError(f"the email cannot be built safely: {exc}") from None
    return msg.as_bytes(policy=_SMTP)
