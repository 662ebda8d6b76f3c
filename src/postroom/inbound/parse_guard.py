"""The standard library's parser, guarded against bombs: bounded nesting and headers.

Two of its costs grow faster than the message: it nests a generator per multipart or
message/rfc822 level and checks every line against every open boundary (a message
nested thousands of levels deep costs depth x lines, then ends in RecursionError), and
it splits a header's parameters in time that grows with the square of their number (a
25 MB Content-Type would take hours). So its parts know their depth, and past a bound
a part reads as an opaque ``application/octet-stream`` blob (kept, not opened): at most
:data:`MAX_NESTING` levels, fewer for a message of very many lines, so that lines x
depth stays within a budget. Each header value is cut to a bound as it is read. Both
are noted as defects.

The structure is read with compat32: the default policy parses every header it touches
(the parser itself asks each part's Content-Type several times), which costs ten to
twenty times as much and raises on some malformed values. Header values are decoded one
by one with the default policy's parser instead (``parse_headers``).
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
from typing import Any

from postroom.inbound.parse_text import Defects, shown

MAX_NESTING = 12
MIN_NESTING = 4  # mixed > alternative > related > a leaf: read in any message
LINE_CHECKS = 8_000_000  # lines x depth the parser may spend on boundary checks
# MIME headers hold the parameters; other headers are bounded again when decoded.
MAX_MIME_HEADER = 8_000
MAX_HEADER = 100_000


class _Part(email.message.Message):
    """A message part that knows how deep it is, and stops nesting past the bound."""

    depth = 0
    limit = MAX_NESTING
    root: _Part | None = None
    too_deep = False

    def attach(self, payload: Any) -> None:
        """Attach ``payload`` one level deeper than this part."""
        if isinstance(payload, _Part):
            payload.depth = self.depth + 1
            payload.limit = self.limit
            payload.root = self.root or self
        super().attach(payload)

    def get_content_type(self) -> str:
        """The part's type; past the nesting bound a blob, which the parser does not open."""
        if self.depth > self.limit:
            if self.root is not None:
                self.root.too_deep = True
            return "application/octet-stream"
        return super().get_content_type()


class _BoundedHeaders(email.policy.Compat32):
    """compat32, with each header value cut to a bound as the parser reads it."""

    cuts: list[str]

    def __init__(self, cuts: list[str]) -> None:
        super().__init__()
        object.__setattr__(self, "cuts", cuts)  # policies refuse attribute assignment

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """The header's name and value (cut to its bound), as compat32 reads them."""
        name, value = super().header_source_parse(sourcelines)
        limit = MAX_MIME_HEADER if name.strip().lower().startswith("content-") else MAX_HEADER
        if len(value) > limit:
            if len(self.cuts) < 10:
                self.cuts.append(name.strip()[:40])
            value = value[:limit]
        return name, value


def read_message(raw: bytes, defects: Defects) -> email.message.Message:
    """``raw`` parsed into its MIME tree, within the bounds; problems noted."""
    cuts: list[str] = []
    policy = _BoundedHeaders(cuts)
    limit = max(MIN_NESTING, min(MAX_NESTING, LINE_CHECKS // max(1, raw.count(b"\n"))))

    def part(policy: email.policy.Policy = policy) -> _Part:
        made = _Part(policy)
        made.limit = limit
        return made

    message: email.message.Message
    try:
        message = email.message_from_bytes(raw, _class=part, policy=policy)
    except Exception:
        defects.add("the message structure could not be read: only its headers were")
        message = email.parser.BytesHeaderParser(_class=part, policy=policy).parsebytes(raw)
    for name in cuts:
        defects.add(f"header {shown(name)} is too long: its end was cut")
    if isinstance(message, _Part) and message.too_deep:
        defects.add(f"MIME parts nested more than {limit} levels deep were kept unread, as files")
    return message
