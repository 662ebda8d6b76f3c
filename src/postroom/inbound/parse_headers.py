"""Header values of received mail: decoded words, Message-IDs, addresses and the date.

Every header is read from its raw source text (as the parser saw it), so one malformed
header costs that header only: the default policy's parser is tried first, then the
compat32 decoder, then the raw text, each fallback noted as a defect.
"""

from __future__ import annotations

import email.header
import email.policy
import email.utils
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from postroom.inbound.parse_text import (
    Defects,
    decode_bytes,
    line,
    shown,
    text_codec,
    undo_surrogateescape,
)
from postroom.validation import check_address

# One header value as decoded; longer ones are cut (RFC 5322 allows 998 a line). The
# address parser's time grows faster than the length: 16,000 costs it a fraction of a
# second at worst. References keep their end (the newest ids) and may be longer.
MAX_HEADER_CHARS = 16_000
MAX_REFERENCES_CHARS = 64_000
MAX_SUBJECT = 998
MAX_NAME = 200
MAX_MESSAGE_ID = 900
MAX_REFERENCES = 50
MAX_IN_REPLY_TO = 10
MAX_RECIPIENTS = 100

_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,80})\?([bBqQ])\?([^?\s]*)\?=")
_BRACKETED = re.compile(r"<([^<>]*)>")
_ID_CHARACTER_BAD = re.compile(r"[\s<>\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Headers:
    """The raw header values of one message, by lower-case name, in order of appearance."""

    __slots__ = ("_values", "defects")

    def __init__(self, items: Iterable[tuple[str, object]], defects: Defects) -> None:
        self.defects = defects
        self._values: dict[str, list[str]] = {}
        for name, value in items:
            key = str(name).strip().lower()
            # A value is a str from the parser; anything else is read as text anyway.
            text = value if isinstance(value, str) else str(value)
            self._values.setdefault(key, []).append(text)

    def _cut(self, name: str, how: str) -> None:
        """Note a header cut here, unless its cut is noted already (by the MIME reader).

        The reader bounds every header as it parses, under the name as written
        ('References'); a header as long as that is said to be too long once, not again
        in other words.
        """
        said = f"header {shown(name, 40)} is too long".lower()
        if not any(d.lower().startswith(said) for d in self.defects.result()):
            self.defects.add(f"header {shown(name, 40)} is too long: {how}")

    def all(self, name: str) -> list[str]:
        """Each value of header ``name``: unfolded, 8-bit bytes decoded, bounded."""
        return [self._clean(name, value) for value in self._values.get(name, [])]

    def first(self, name: str) -> str | None:
        """The first value of header ``name``, or None when absent."""
        values = self._values.get(name)
        return self._clean(name, values[0]) if values else None

    def count(self, name: str) -> int:
        """How many times header ``name`` appears."""
        return len(self._values.get(name, ()))

    def _clean(self, name: str, value: str) -> str:
        if name == "references":
            if len(value) > MAX_REFERENCES_CHARS:
                self._cut(name, "kept its end")
                value = value[-MAX_REFERENCES_CHARS:]
        elif len(value) > MAX_HEADER_CHARS:
            self._cut(name, "its end was cut")
            value = value[:MAX_HEADER_CHARS]
        value = _FOLD.sub("", value)
        return undo_surrogateescape(value, what=f"header {shown(name, 40)}", defects=self.defects)


def decode_words(value: str, *, what: str, defects: Defects) -> str:
    """``value`` with its RFC 2047 encoded words decoded (unknown charsets noted)."""
    if "=?" not in value:
        return value
    unknown = {
        charset
        for charset in (m.group(1).partition("*")[0] for m in _ENCODED_WORD.finditer(value))
        if text_codec(charset) is None
    }
    if not unknown:
        try:
            decoded = str(email.policy.default.header_factory("subject", value))
        except Exception:  # the policy's parser has raised on hostile input before
            defects.add(f"{what} could not be decoded by the standard parser: decoded word by word")
        else:
            if "\ufffd" in decoded and "\ufffd" not in value:
                defects.add(f"{what} has bytes invalid in their charset: they were replaced")
            return decoded
    # compat32's decoder, each word in its own charset (unknown ones as latin-1, noted).
    try:
        return "".join(
            chunk
            if isinstance(chunk, str)
            else decode_bytes(chunk, charset, what=what, defects=defects)
            for chunk, charset in email.header.decode_header(value)
        )
    except Exception:
        defects.add(f"{what} has malformed encoded words: kept as written")
        return value


def subject(headers: Headers) -> str:
    """The decoded subject on one line, at most 998 characters."""
    raw = headers.first("subject")
    if raw is None:
        return ""
    return line(decode_words(raw, what="the subject", defects=headers.defects), limit=MAX_SUBJECT)


def message_id(headers: Headers) -> str | None:
    """The Message-ID without its angle brackets, if there is one worth trusting."""
    raw = headers.first("message-id")
    if raw is None:
        headers.defects.add("no Message-ID header")
        return None
    if headers.count("message-id") > 1:
        headers.defects.add(f"{headers.count('message-id')} Message-ID headers: used the first")
    ids = _ids(raw)
    if len(ids) != 1 or not _sane_id(ids[0]):
        headers.defects.add(f"the Message-ID {shown(raw.strip())} is not usable")
        return None
    return ids[0]


def id_list(headers: Headers, name: str, *, keep: int) -> tuple[str, ...]:
    """The sane ids of In-Reply-To or References, without brackets; the last ``keep``."""
    values = headers.all(name)
    ids = [i for value in values for i in _ids(value)]
    good = [i for i in ids if _sane_id(i)]
    if len(good) < len(ids):
        headers.defects.add(f"{len(ids) - len(good)} unusable ids in {name.title()} were ignored")
    return tuple(dict.fromkeys(good[-keep:]))


def _ids(value: str) -> list[str]:
    found = _BRACKETED.findall(value)
    if found:
        return [i.strip() for i in found]
    # Some clients leave the brackets out: take the words that look like ids.
    return [word for word in value.split() if "@" in word] or (
        [value.strip()] if value.strip() else []
    )


def _sane_id(value: str) -> bool:
    return (
        0 < len(value) <= MAX_MESSAGE_ID
        and _ID_CHARACTER_BAD.search(value) is None
        and value.isprintable()
    )


def sender(headers: Headers) -> tuple[str | None, str, str]:
    """(validated address, display name, the address as written lower-cased) of From."""
    raw = headers.first("from")
    if raw is None:
        headers.defects.add("no From header")
        return None, "", ""
    pairs = _pairs([raw], headers.defects)
    if not pairs:
        headers.defects.add(f"the From header {shown(raw.strip())} holds no address")
        return None, line(decode_words(raw, what="From", defects=headers.defects), limit=200), ""
    name, address = pairs[0]
    display = line(decode_words(name, what="the sender's name", defects=headers.defects), limit=200)
    try:
        valid = check_address(address, what="sender")
    except ValueError:
        headers.defects.add(f"the sender {shown(address)} is not a valid address")
        valid = None
    return valid, display, address.lower()


def recipients(headers: Headers) -> tuple[str, ...]:
    """Lower-cased valid addresses of To, Cc, Delivered-To and X-Original-To, deduplicated."""
    found: dict[str, None] = {}
    invalid = 0
    for name in ("to", "cc", "delivered-to", "x-original-to"):
        for _, address in _pairs(headers.all(name), headers.defects):
            if len(found) >= MAX_RECIPIENTS:
                headers.defects.add(f"more than {MAX_RECIPIENTS} recipients: kept the first")
                return tuple(found)
            try:
                found.setdefault(check_address(address, what="recipient").lower(), None)
            except ValueError:
                invalid += 1
    if invalid:
        headers.defects.add(f"{invalid} recipient addresses were not valid and were ignored")
    return tuple(found)


def _pairs(values: list[str], defects: Defects) -> list[tuple[str, str]]:
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        defects.add("an address header could not be parsed")
        return []
    return [(name, address.strip()) for name, address in pairs if "@" in address]


def sent_at(headers: Headers) -> datetime | None:
    """The Date header as an aware UTC time, or None when missing or unreadable."""
    raw = headers.first("date")
    if raw is None:
        headers.defects.add("no Date header")
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw.strip()[:200])
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # "-0000": the time is UTC, its zone unknown
        return when.astimezone(UTC)
    except Exception:
        headers.defects.add(f"the Date {shown(raw.strip())} is not a date")
        return None
