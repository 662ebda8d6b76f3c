"""The message a report returns: its headers, and a Message-ID found in its text.

A standard report carries the returned message as ``message/rfc822`` or only its
headers as ``text/rfc822-headers``; a non-standard one often pastes it into its text
("--- Below this line is a copy of the message."). Either way its Message-ID names the
email the report speaks of.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import re

from postroom.inbound.parse_headers import Headers, message_id
from postroom.inbound.parse_text import Defects

MAX_TEXT = 2_000_000  # characters of a report's text searched
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]{1,250})>", re.IGNORECASE | re.M)


def returned_headers(message: email.message.Message) -> email.message.Message | None:
    """The headers of the message the report returns, or None when it returns none."""
    for part in message.walk():
        if part is message or part.get_content_type() not in _RETURNED:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            inner = next((p for p in payload if isinstance(p, email.message.Message)), None)
            if inner is not None and inner.keys():
                return inner
            continue
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
        parser = email.parser.HeaderParser(policy=email.policy.compat32)
        parsed = parser.parsestr(text.lstrip("\r\n"))
        if parsed.keys():
            return parsed
    return None


def returned_message_id(headers: email.message.Message | None) -> str | None:
    """The returned message's Message-ID without brackets, if it has a sane one."""
    if headers is None:
        return None
    return message_id(Headers(headers.items(), Defects()))


def text_of(message: email.message.Message) -> str:
    """The report's text parts (not those of a returned message), bounded."""
    chunks: list[str] = []
    size = 0
    for part in _leaves(message):
        if part.get_content_maintype() != "text" or part.get_content_type() in _RETURNED:
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = raw.decode(charset, "replace")
        except LookupError:
            text = raw.decode("latin-1")
        if part.get_content_subtype() == "html":
            text = re.sub(r"<[^>]{0,2000}>", " ", text)
        chunks.append(text.replace("\r\n", "\n").replace("\r", "\n"))
        size += len(text)
        if size >= MAX_TEXT:
            break
    return "\n".join(chunks)[:MAX_TEXT]


def _leaves(message: email.message.Message) -> list[email.message.Message]:
    """Leaf parts, not descending into attached messages (their text is not the report's)."""
    found: list[email.message.Message] = []
    stack = [message]
    while stack:
        part = stack.pop()
        if part.get_content_maintype() == "message" and part is not message:
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
        else:
            found.append(part)
    return found


def message_id_in_text(text: str) -> str | None:
    """A ``Message-ID: <...>`` line in a report's text (the pasted returned message)."""
    found = _MESSAGE_ID.search(text)
    return found.group(1) if found else None
