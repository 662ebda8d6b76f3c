"""A report part's bytes as text, whatever charset it claims.

A stranger names any charset: one Python does not know, one with a NUL in its name
(``bytes.decode`` raises ValueError), or a codec that is no text encoding at all
(``base64``, ``rot13``), decodes only strictly (``idna``, ``undefined``), or is slow on
big input (``punycode``). Those read as Latin-1, which never fails.
"""

from __future__ import annotations

import codecs

_REFUSED = frozenset({"idna", "punycode", "undefined"})


def usable(charset: str | None) -> str | None:
    """The codec name ``charset`` stands for when it is a text encoding that decodes
    leniently, else None."""
    if not charset or len(charset) > 64:
        return None
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        return None
    if info.name in _REFUSED or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decoded(raw: bytes, charset: str | None) -> str:
    """``raw`` decoded by ``charset`` (UTF-8 when none is named; bad bytes replaced), or
    as Latin-1 when the charset named cannot decode it."""
    name = "utf-8" if charset is None else usable(charset)
    if name is None:
        return raw.decode("latin-1")
    try:
        return raw.decode(name, "replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        return raw.decode("latin-1")
