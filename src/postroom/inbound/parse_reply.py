"""The reply's own text: the quoted history below it folded away (mail-parser-reply).

mail-parser-reply knows the quote headers of many languages and mail clients ("On ...
wrote:", "Am ... schrieb:", "Le ... a écrit :", Outlook's "From: ... Sent: ..."). Its
expressions take time that grows with the square of a line's length, so they read a
*probe*: the text's first lines, each stripped and cut short. The line where the probe's
first reply ends is then where the original text is cut, so long lines are kept whole.
Whatever the parser cannot do, the whole text stands in, with a defect.
"""

from __future__ import annotations

import functools
import re

from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]

from postroom.inbound.parse_text import Defects

# The reply is at the top: its quote header is searched for in the first lines only.
# Hostile text of this size costs the parser well under a second.
MAX_PROBE_CHARS = 16_000
MAX_PROBE_LINE = 300
MAX_PROBE_LINES = 1_000
LANGUAGES = ("en", "de", "fr", "nl", "es", "it", "sv", "da", "pl", "cs")
# The parser rewrites lines of 32 or more underscores or dashes (Outlook's separator),
# which would shift its lines against ours; 31 read the same to its quote headers.
_SEPARATOR = re.compile(r"[_-]{32,}")


@functools.cache
def _parser() -> EmailReplyParser:
    return EmailReplyParser(languages=list(LANGUAGES))


def reply_text(full_text: str, defects: Defects) -> str:
    """The newest reply in ``full_text`` (quoted history removed), else all of it."""
    if not full_text.strip():
        return ""
    lines = full_text.split("\n")
    probe_lines: list[str] = []
    size = 0
    for line in lines[:MAX_PROBE_LINES]:
        cut = _SEPARATOR.sub("-" * 31, line.strip()[:MAX_PROBE_LINE].strip())
        probe_lines.append(cut)
        size += len(cut) + 1
        if size >= MAX_PROBE_CHARS:
            break
    probe = "\n".join(probe_lines)
    try:
        replies = _parser().read(probe).replies
        first = replies[0] if replies else None
        content, header = (first.content, first.headers) if first is not None else ("", "")
    except Exception:  # a third-party parser: its failure must not lose the mail
        defects.add("the reply could not be told from the quoted history: kept the whole text")
        return full_text
    if len(replies) < 2:
        return full_text  # no quote header: it is all reply
    if header or not isinstance(content, str) or not content.strip():
        defects.add("no reply text above the quoted history: kept the whole text")
        return full_text
    start = probe.find(content)
    if start < 0:
        defects.add("the reply could not be told from the quoted history: kept the whole text")
        return full_text
    ends_on = probe.count("\n", 0, start + len(content))
    return "\n".join(lines[: ends_on + 1]).lstrip("\n").rstrip()
