"""A case's conversation as the Studio shows it: each email's own words, the quoted
history folded away, and links to where the whole email can be read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from postroom.cases.models import Case
from postroom.inbound.conversation import ConversationItem

# Where quoted history starts in a plain-text email: a quoted line, or the line that
# introduces the quote in the common mail clients. Everything from there on is folded.
_QUOTE_START = re.compile(
    r"^(>|On .{1,300} wrote:\s*$|-{2,} ?Original Message ?-{2,}|_{10,}\s*$)",
    re.IGNORECASE,
)
RECEIVED_EML = "received-{id}.eml"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One email of the timeline with what the page links to."""

    item: ConversationItem
    own: str  # the email's own words
    quoted: str  # the quoted history, folded on the page ("" when there is none)
    page_url: str  # the received message's page or the outbox entry
    eml_url: str | None  # the case's .eml of it in the viewer, when the case keeps one

    @property
    def received(self) -> bool:
        return self.item.kind == "received"


def fold(text: str) -> tuple[str, str]:
    """``text`` split where the quoted history starts: (own words, quoted history)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if _QUOTE_START.match(line.strip()):
            return "\n".join(lines[:number]).rstrip(), "\n".join(lines[number:]).strip()
    return text.rstrip(), ""


def _eml_url(case: Case, item: ConversationItem) -> str | None:
    names = {a.name for a in case.attachments}
    if item.kind == "received":
        name: str | None = RECEIVED_EML.format(id=item.id)
        if name not in names:
            name = None
    else:
        name = next((a.name for a in case.attachments if a.outbox_id == item.id), None)
    if name is None:
        return None
    return f"/cases/{quote(case.id, safe='')}/attachment?name={quote(name, safe='')}&show=view"


def _received_quote(own: str, whole: str) -> str:
    """What the whole text of a received mail holds besides the reply's own words."""
    own, whole = own.strip(), whole.strip()
    if whole == own:
        return ""
    return whole[len(own) :].strip() if own and whole.startswith(own) else whole


def timeline(case: Case, items: list[ConversationItem]) -> list[TimelineEntry]:
    """The entries of ``case``'s conversation ``items``, in their (time) order."""
    entries = []
    for item in items:
        if item.kind == "received":
            # Parsing told the reply from its quoted history already.
            own, quoted = item.text.rstrip(), _received_quote(item.text, item.full_text)
        else:
            own, quoted = fold(item.text)
        page_url = f"/inbound/{item.id}" if item.kind == "received" else f"/outbox/{item.id}"
        entries.append(
            TimelineEntry(
                item=item,
                own=own,
                quoted=quoted,
                page_url=page_url,
                eml_url=_eml_url(case, item),
            )
        )
    return entries
