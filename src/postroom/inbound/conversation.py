"""A case's conversation: the mail it sent and the mail it received, in time order."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from postroom.cases.store import load_case
from postroom.db import tables
from postroom.inbound.parse import parse_mail
from postroom.inbound.sanitise import sanitised

# The newest this many of each kind: a conversation is read by people, not exported.
MAX_ITEMS = 200
BODY_CACHE_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class _Body:
    full_text: str
    html: str | None


class BodyCache:
    """Parsed bodies of emails already shown, so that a refreshed page parses nothing again.

    The Studio's case page refreshes its conversation every few seconds: without this,
    each refresh would load and parse every email of the case. Keys carry the email's
    unique Message-ID (sent) or dedupe key (received) besides its row id, so a row id
    reused after a deletion never shows another email's body; the bytes of a row never
    change once written.
    """

    def __init__(self, entries: int = BODY_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._bodies: OrderedDict[tuple[str, int, str], _Body] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> _Body | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: tuple[str, int, str], body: _Body) -> None:
        with self._lock:
            self._bodies[key] = body
            self._bodies.move_to_end(key)
            while len(self._bodies) > self._entries:
                self._bodies.popitem(last=False)


def _bodies(
    conn: Connection, kind: str, keys: dict[int, str], cache: BodyCache
) -> dict[int, _Body]:
    """The parsed bodies of rows ``keys`` (id → unique key): cached, else loaded once."""
    found: dict[int, _Body] = {}
    for row_id, unique in keys.items():
        body = cache.get((kind, row_id, unique))
        if body is not None:
            found[row_id] = body
    missing = [i for i in keys if i not in found]
    if missing:
        t = tables.outbox if kind == "sent" else tables.inbound_messages
        column = t.c.message if kind == "sent" else t.c.raw
        for row in conn.execute(select(t.c.id, column).where(t.c.id.in_(missing))):
            raw = row[1]
            mail = parse_mail(bytes(raw)) if raw is not None else None
            html = mail.html if mail is not None else None
            if html is not None and kind == "received":
                # A stranger wrote it: whoever reads the conversation (the REST API
                # too) gets it without scripts, handlers or remote images.
                html = sanitised(html)
            body = _Body(full_text=mail.full_text if mail is not None else "", html=html)
            cache.put((kind, row.id, keys[row.id]), body)
            found[row.id] = body
    return found


class ConversationItem(BaseModel):
    """One email of a case's conversation, sent or received.

    ``html`` is as written for sent mail, and sanitised for received mail (an
    allow-list: see :mod:`postroom.inbound.sanitise`). ``text`` is the reply's own text
    for received mail (quoted history folded away; ``full_text`` keeps it) and the
    text part for sent mail.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["sent", "received"]
    at: datetime = Field(description="Received: when it was read; sent: when sent, else queued")
    id: int = Field(description="The outbox id (sent) or the received message's id")
    subject: str
    from_address: str | None
    to: list[str] = Field(default_factory=list)
    status: str = Field(description="The outbox status, or where the received mail went")
    text: str = ""
    full_text: str = ""
    html: str | None = None


def conversation(
    conn: Connection, case_id: str, *, cache: BodyCache | None = None
) -> list[ConversationItem]:
    """The case's sent and received mail, oldest first (NotFoundError for no case)."""
    cache = cache or BodyCache()
    load_case(conn, case_id, details=False)
    o, m = tables.outbox, tables.inbound_messages
    items: list[ConversationItem] = []
    sent = conn.execute(
        select(
            o.c.id,
            o.c.subject,
            o.c.mail_from,
            o.c.recipients,
            o.c.status,
            o.c.sent_at,
            o.c.created_at,
            o.c.message_id,
        )
        .where(o.c.case_id == case_id)
        .order_by(o.c.id.desc())
        .limit(MAX_ITEMS)
    ).all()
    sent_bodies = _bodies(conn, "sent", {r.id: r.message_id for r in sent}, cache)
    for row in sent:
        body = sent_bodies.get(row.id, _Body("", None))
        items.append(
            ConversationItem(
                kind="sent",
                at=row.sent_at or row.created_at,
                id=row.id,
                subject=row.subject,
                from_address=row.mail_from or None,
                to=[r["address"] for r in row.recipients],
                status=row.status,
                text=body.full_text,
                full_text=body.full_text,
                html=body.html,
            )
        )
    received = conn.execute(
        select(
            m.c.id,
            m.c.message_id,
            m.c.subject,
            m.c.from_address,
            m.c.recipients,
            m.c.status,
            m.c.received_at,
            m.c.text,
            m.c.dedupe_key,
        )
        .where(m.c.case_id == case_id)
        .order_by(m.c.id.desc())
        .limit(MAX_ITEMS)
    ).all()
    shown: set[str] = set()
    kept = []
    for row in reversed(received):  # the oldest first: a copy read later is left out
        if row.message_id is not None:
            if row.message_id in shown:
                continue  # the same mail read from another of Postroom's mailboxes
            shown.add(row.message_id)
        kept.append(row)
    received_bodies = _bodies(conn, "received", {r.id: r.dedupe_key for r in kept}, cache)
    for row in kept:
        body = received_bodies.get(row.id, _Body("", None))
        items.append(
            ConversationItem(
                kind="received",
                at=row.received_at,
                id=row.id,
                subject=row.subject,
                from_address=row.from_address,
                to=list(row.recipients or []),
                status=row.status,
                text=row.text,
                full_text=body.full_text or row.text,
                html=body.html,
            )
        )
    items.sort(key=lambda i: (i.at, i.kind == "received", i.id))
    return items
