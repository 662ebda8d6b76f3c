"""A case's conversation: the mail it sent and the mail it received, in time order."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from postroom.cases.store import load_case
from postroom.db import tables
from postroom.inbound.parse import parse_mail

# The newest this many of each kind: a conversation is read by people, not exported.
MAX_ITEMS = 200


class ConversationItem(BaseModel):
    """One email of a case's conversation, sent or received.

    ``html`` is as written (for received mail: as the stranger sent it); whoever shows
    it must sanitise it. ``text`` is the reply's own text for received mail (quoted
    history folded away; ``full_text`` keeps it) and the text part for sent mail.
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


def conversation(conn: Connection, case_id: str) -> list[ConversationItem]:
    """The case's sent and received mail, oldest first (NotFoundError for no case)."""
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
            o.c.message,
        )
        .where(o.c.case_id == case_id)
        .order_by(o.c.id.desc())
        .limit(MAX_ITEMS)
    )
    for row in sent:
        mail = parse_mail(bytes(row.message)) if row.message is not None else None
        items.append(
            ConversationItem(
                kind="sent",
                at=row.sent_at or row.created_at,
                id=row.id,
                subject=row.subject,
                from_address=row.mail_from or None,
                to=[r["address"] for r in row.recipients],
                status=row.status,
                text=mail.full_text if mail is not None else "",
                full_text=mail.full_text if mail is not None else "",
                html=mail.html if mail is not None else None,
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
            m.c.raw,
        )
        .where(m.c.case_id == case_id)
        .order_by(m.c.id.desc())
        .limit(MAX_ITEMS)
    )
    shown: set[str] = set()
    for row in reversed(received.all()):  # the oldest first: a copy read later is left out
        if row.message_id is not None:
            if row.message_id in shown:
                continue  # the same mail read from another of Postroom's mailboxes
            shown.add(row.message_id)
        mail = parse_mail(bytes(row.raw)) if row.raw is not None else None
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
                full_text=mail.full_text if mail is not None else row.text,
                html=mail.html if mail is not None else None,
            )
        )
    items.sort(key=lambda i: (i.at, i.kind == "received", i.id))
    return items
