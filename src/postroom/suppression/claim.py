"""Suppressed recipients taken out of claimed rows, in the claim's own transaction.

A recipient on the suppression list is never attempted: it becomes ``suppressed`` with
the entry's reason as its text. The row's recipients are written back at once, so a row
claimed again (a retry, another agent after a lost lease) does not repeat the change,
its case history line or its ``email.suppressed`` events. A row left with nobody to
send to ends through the deliverer's ``nobody_left``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy import Connection, update

from postroom.cases.store import add_history
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.events import email_event
from postroom.outbox.models import ClaimedEmail, Recipient, RecipientState
from postroom.outbox.status import OutboxStatus
from postroom.suppression.models import Suppression
from postroom.suppression.store import SuppressionStore, holding
from postroom.webhooks.events import emit
from postroom.webhooks.models import Event, EventType
from postroom.webhooks.payloads import recipient_data

log = logging.getLogger("postroom.agent")
t = tables.outbox


def mark_suppressed(
    conn: Connection, rows: Sequence[ClaimedEmail], *, store: SuppressionStore | None = None
) -> list[ClaimedEmail]:
    """``rows`` with their suppressed open recipients marked, written back in ``conn``.

    The account's own entries and the entries for every account both count, whatever
    the ``suppression_scope`` setting (which only says where automatic entries go).
    """
    store = store or SuppressionStore()
    # One read for the batch: most batches hold no suppressed address at all.
    entries = store.entries(conn, (a for row in rows for a in row.open_recipients))
    if not entries:
        return list(rows)
    events: list[Event] = []
    out: list[ClaimedEmail] = []
    for row in rows:
        own = {a.strip().lower() for a in row.open_recipients}
        found = {a: e for a, e in holding(entries, account=row.account).items() if a in own}
        if not found:
            out.append(row)
            continue
        recipients = tuple(_marked(r, found) for r in row.recipients)
        changed = [r for r, before in zip(recipients, row.recipients, strict=True) if r != before]
        conn.execute(
            update(t)
            .where(t.c.id == row.id)
            .values(recipients=[r.to_json() for r in recipients], updated_at=utcnow())
        )
        listed = "; ".join(f"{r.address} ({r.text})" for r in changed)
        log.info("outbox #%s: not sent to suppressed %s", row.id, listed)
        if row.case_id is not None:
            add_history(
                conn,
                row.case_id,
                actor="agent",
                action="email-suppressed",
                detail=f"outbox #{row.id} '{row.subject}' not sent to {listed}",
            )
        events.extend(
            email_event(
                EventType.EMAIL_SUPPRESSED,
                row,
                OutboxStatus.SENDING,
                recipient=recipient_data(r),
            )
            for r in changed
        )
        out.append(replace(row, recipients=recipients))
    emit(conn, events)
    return out


def _marked(recipient: Recipient, found: Mapping[str, Suppression]) -> Recipient:
    entry = found.get(recipient.address.strip().lower())
    if entry is None or not recipient.open:
        return recipient
    return Recipient(recipient.address, RecipientState.SUPPRESSED, None, entry.describe())
