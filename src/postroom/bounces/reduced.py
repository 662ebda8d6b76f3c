"""A bounded copy of a report, for ``flufl.bounce``'s detectors.

The detectors try every pattern they know on every line of every part (about 12 µs a
line), and some patterns (``\\S+@\\S+``, ``<[^>]*>``) take time that grows with the
square of a line's length. A stranger's mail that merely looks like a bounce (a report
sender and a bounce subject route it here) with a megabyte of blank lines, ninety
thousand tiny parts or one long line would cost seconds to minutes. A real bounce's
text is short and comes first, so the detectors read a copy: its first parts; their
text decoded (the transfer encoding undone, the charset read leniently), runs of
blanks folded to one, lines cut to the length an address line needs, and the whole
bounded in characters and lines; only the headers a detector looks at, as plain text
(a header with raw 8-bit bytes reads as an ``email.header.Header``, which some detectors
cannot compare); a plain Content-Type (the type, no parameters: a flood of those is
costly to parse).
"""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass

from postroom.bounces.charsets import decoded

MAX_PARTS = 20  # MIME parts copied, containers included, in reading order
MAX_PART_BYTES = 64 * 1024  # of one part, decoded, before its lines are read
MAX_CHARS = 24 * 1024  # of text in the whole copy
MAX_LINES = 2_000  # lines of text in the whole copy
MAX_LINE = 160  # characters of one line: an address line is far shorter
MAX_PER_HEADER = 20  # values of one header name
# What the detectors read (flufl.bounce 4 to 6), besides the Content-Type made here.
_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "x-failed-recipients",
        "x-mailer",
        "content-description",
        "content-disposition",
        "mime-version",
    }
)
_BLANKS = re.compile(r"[^\S\n]+")


@dataclass
class _Budget:
    parts: int = MAX_PARTS
    chars: int = MAX_CHARS
    lines: int = MAX_LINES


def reduced(message: email.message.Message) -> email.message.Message:
    """A copy of ``message`` within the bounds above."""
    return _copy(message, _Budget())


def _copy(
    part: email.message.Message, budget: _Budget, *, fields: bool = False
) -> email.message.Message:
    """A part's copy; ``fields``: a delivery-status block, whose fields are all kept."""
    budget.parts -= 1
    copy = email.message.Message()
    copy.set_default_type(part.get_default_type())
    kind = part.get_content_type()  # the parser's reading: past its nesting bound a blob
    if not fields:
        copy["Content-Type"] = kind
    _copy_headers(part, copy, every=fields)
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = kind == "message/delivery-status"
        children: list[email.message.Message | str] = []
        for child in payload:
            if budget.parts <= 0:
                break
            if isinstance(child, email.message.Message):
                children.append(_copy(child, budget, fields=blocks))
        copy.set_payload(children)
    elif kind.startswith(("text/", "message/")):
        copy.set_payload(_text(part, budget))
    else:
        copy.set_payload("")  # a picture or a file: nothing a detector reads
    return copy


def _copy_headers(part: email.message.Message, copy: email.message.Message, *, every: bool) -> None:
    seen: dict[str, int] = {}
    for name, value in part.raw_items():
        key = name.lower()
        if not (every or key in _HEADERS) or seen.get(key, 0) >= MAX_PER_HEADER:
            continue
        seen[key] = seen.get(key, 0) + 1
        copy[name] = _plain(value)


def _plain(value: object) -> str:
    """A header value as plain text: raw 8-bit bytes (kept as surrogates) read as UTF-8."""
    text = str(value)[: MAX_LINE * 8]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _text(part: email.message.Message, budget: _Budget) -> str:
    """The part's text, decoded, within what is left of the budget."""
    if budget.chars <= 0 or budget.lines <= 0:
        return ""
    try:
        raw = part.get_payload(decode=True)
        charset = part.get_content_charset()
    except Exception:  # a stranger's encoding or parameters: this part reads as empty
        return ""
    if not isinstance(raw, bytes):
        return ""
    text = decoded(raw[:MAX_PART_BYTES], charset if isinstance(charset, str) else None)
    lines: list[str] = []
    start = 0
    while start < len(text) and budget.chars > 0 and budget.lines > 0:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = _BLANKS.sub(" ", text[start : min(end, start + MAX_LINE * 4)])
        line = line[:MAX_LINE].rstrip("\n") + "\n"
        lines.append(line)
        budget.chars -= len(line)
        budget.lines -= 1
        start = end
    return "".join(lines)
