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
from collections.abc import Iterator

from postroom.bounces.charsets import decoded
from postroom.bounces.standard import walked
from postroom.inbound.parse_headers import Headers, message_id
from postroom.inbound.parse_text import Defects

MAX_TEXT = 256 * 1024  # characters of a report's text searched: a real one's is short
MAX_TEXT_PARTS = 20  # text parts read
MAX_LEAVES = 200  # parts looked at for them
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
# A tag: no "<" inside, so a run of "<" fails at once instead of scanning ahead from each.
_TAG = re.compile(r"<[^<>]{0,2000}>")
_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]{1,250})>", re.IGNORECASE | re.M)


def returned_headers(message: email.message.Message) -> email.message.Message | None:
    """The headers of the message the report returns, or None when it returns none."""
    for part in walked(message):
        if part is message or part.get_content_type() not in _RETURNED:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            inner = next((p for p in payload if isinstance(p, email.message.Message)), None)
            if inner is not None and inner.keys():
                return inner
            continue
        raw = part.get_payload(decode=True)
        text = raw[:MAX_TEXT].decode("utf-8", "replace") if isinstance(raw, bytes) else ""
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
    """The report's text parts (not those of a returned message), bounded: each part's
    bytes are cut to what is left of :data:`MAX_TEXT` before they are decoded or searched."""
    chunks: list[str] = []
    left = MAX_TEXT
    read = 0
    for seen, part in enumerate(_leaves(message)):
        if left <= 0 or read >= MAX_TEXT_PARTS or seen >= MAX_LEAVES:
            break
        if part.get_content_maintype() != "text" or part.get_content_type() in _RETURNED:
            continue
        read += 1
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        text = decoded(raw[:left], _charset(part))[:left]
        if part.get_content_subtype() == "html":
            text = _TAG.sub(" ", text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        chunks.append(text)
        left -= len(text) + 1
    return "\n".join(chunks)[:MAX_TEXT]


def _charset(part: email.message.Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:  # a stranger's parameters: read as UTF-8
        return None
    return charset if isinstance(charset, str) else None


def _leaves(message: email.message.Message) -> Iterator[email.message.Message]:
    """Leaf parts in order, not descending into attached messages (their text is not the
    report's)."""
    stack = [message]
    while stack:
        part = stack.pop()
        if part.get_content_maintype() == "message" and part is not message:
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
        else:
            yield part


def message_id_in_text(text: str) -> str | None:
    """A ``Message-ID: <...>`` line in a report's text (the pasted returned message)."""
    found = _MESSAGE_ID.search(text)
    return found.group(1) if found else None
