"""The reply's own text: the quoted history below it folded away (mail-parser-reply).

mail-parser-reply knows the quote headers of many languages and mail clients ("On ...
wrote:", "Am ... schrieb:", "Le ... a écrit :", Outlook's "From: ... Sent: ..."). Its
expressions are run on a bounded start of the text only, so hostile text cannot make
them slow; whatever it cannot do, the whole text stands in, with a defect.
"""

from __future__ import annotations

import functools

from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]

from postroom.inbound.parse_text import Defects

# The reply is at the top: a longer text is searched for its quote header in its start.
MAX_SEARCHED = 20_000
LANGUAGES = ("en", "de", "fr", "nl", "es", "it", "sv", "da", "pl", "cs")


@functools.cache
def _parser() -> EmailReplyParser:
    return EmailReplyParser(languages=list(LANGUAGES))


def reply_text(full_text: str, defects: Defects) -> str:
    """The newest reply in ``full_text`` (quoted history removed), else all of it."""
    if not full_text.strip():
        return ""
    searched = full_text[:MAX_SEARCHED]
    try:
        replies = _parser().read(searched).replies
        reply = replies[0].content if replies else None
    except Exception:  # a third-party parser: its failure must not lose the mail
        defects.add("the reply could not be told from the quoted history: kept the whole text")
        return full_text
    if len(replies) == 1:
        return full_text  # no quote header: it is all reply
    if not isinstance(reply, str) or not reply.strip():
        defects.add("no reply text above the quoted history: kept the whole text")
        return full_text
    return reply
