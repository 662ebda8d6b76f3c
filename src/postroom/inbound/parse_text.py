"""Bytes and strings from received mail made safe to keep: decoded, clean, bounded.

Everything here is total: any input gives an answer, and what had to be guessed is
written to a :class:`Defects` list in plain words.
"""

from __future__ import annotations

import codecs
import re

# What a line may not hold (postroom.text's notion of a line): C0 controls, DEL, NEL
# and the Unicode line and paragraph separators.
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]+")
# What a body may not hold: C0 controls other than tab, LF and CR.
_BODY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"\s{2,}")
# Charsets mail is often labelled with that Python spells differently.
_CHARSET_ALIASES = {
    "unknown-8bit": "latin-1",
    "x-unknown": "latin-1",
    "ks_c_5601-1987": "cp949",
    "x-user-defined": "latin-1",
    "windows-874": "cp874",
}
MAX_DEFECTS = 50


class Defects:
    """What did not parse, in words: deduplicated and bounded."""

    __slots__ = ("_dropped", "_items")

    def __init__(self) -> None:
        self._items: dict[str, None] = {}
        self._dropped = 0

    def add(self, text: str) -> None:
        """Note one problem (a repeat of a noted one is ignored)."""
        text = line(text, limit=300)
        if text in self._items:
            return
        if len(self._items) < MAX_DEFECTS:
            self._items[text] = None
        else:
            self._dropped += 1

    def result(self) -> tuple[str, ...]:
        """The problems noted, in the order they were found."""
        items = list(self._items)
        if self._dropped:
            items.append(f"{self._dropped} more problems were not listed")
        return tuple(items)


def text_codec(charset: str | None) -> str | None:
    """The Python codec for a mail ``charset`` if it is a text encoding, else None."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name or len(name) > 40 or not name.isascii() or not name.isprintable():
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # base64, rot13, zlib and friends are codecs too, but not text encodings;
    # unicode_escape would read backslashes in a letter as escapes.
    if not getattr(info, "_is_text_encoding", True) or "escape" in info.name:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, *, what: str, defects: Defects) -> str:
    """``data`` as text in ``charset``; unknown charsets and bad bytes are replaced, noted."""
    codec = text_codec(charset)
    if charset and codec is None:
        defects.add(f"{what} has an unknown charset {shown(charset)}: read as latin-1")
        return data.decode("latin-1")
    if codec is None:
        # No charset declared: UTF-8 if it is, else the most common legacy encoding.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        defects.add(f"{what} is not valid {codec}: bad bytes were replaced")
    except Exception:  # a codec may fail in its own ways on hostile input
        defects.add(f"{what} could not be decoded as {codec}: read as latin-1")
        return data.decode("latin-1")
    try:
        return data.decode(codec, "replace")
    except Exception:
        return data.decode("latin-1")


def undo_surrogateescape(value: str, *, what: str, defects: Defects) -> str:
    """``value`` with the raw 8-bit bytes the parser escaped read as UTF-8 (else latin-1)."""
    if not _SURROGATE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")  # only \udc80-\udcff can come back
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        defects.add(f"{what} holds 8-bit bytes that are not UTF-8: read as latin-1")
        return data.decode("latin-1")


def no_surrogates(value: str) -> str:
    """``value`` with every lone surrogate replaced (they cannot be stored as UTF-8)."""
    if not _SURROGATE.search(value):
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return _SURROGATE.sub("\ufffd", value)


def line(value: str, *, limit: int) -> str:
    """``value`` on one line: controls and line breaks become spaces, runs folded, bounded."""
    value = no_surrogates(value[: limit * 4])
    value = _SPACES.sub(" ", _LINE_CONTROL.sub(" ", value)).strip()
    return value[:limit].rstrip()


def body(value: str, *, limit: int) -> str:
    """``value`` as a body: LF line ends, tab the only other control kept, bounded."""
    value = no_surrogates(value[:limit])
    return _BODY_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a defect: one line, bounded, escapes visible."""
    text = repr(value[:limit])
    return text + "…" if len(value) > limit else text
