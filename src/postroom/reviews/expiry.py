"""Reviews whose emails expired first: the review ends expired, and the case says so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, update

from postroom.cases.store import SYSTEM, add_history
from postroom.db import tables
from postroom.outbox.events import EVENT_COLUMNS, email_event
from postroom.outbox.status import OutboxStatus
from postroom.reviews.store import ReviewStore
from postroom.webhooks.events import emit
from postroom.webhooks.models import EventType

o = tables.outbox


def note_expired(conn: Connection, outbox_ids: Sequence[int], *, actor: str = SYSTEM) -> int:
    """After the expiry sweep: the pending reviews of these rows end expired; how many."""
    ended = ReviewStore().expire_of_rows(conn, outbox_ids)
    for review in ended:
        if review.case_id is not None:
            add_history(
                conn,
                review.case_id,
                actor=actor,
                action="review-expired",
                detail=(
                    f"review #{review.id} (step '{review.step}') expired before "
                    f"{review.reviewer.describe()} decided: nothing was sent"
                ),
            )
    return len(ended)


def expire_review_rows(conn: Connection, review_id: int, *, now: datetime) -> list[int]:
    """Expire a review's waiting rows whose time has come (a decision found them late)."""
    result = conn.execute(
        update(o)
        .where(
            o.c.review_id == review_id,
            o.c.status == OutboxStatus.AWAITING_REVIEW.value,
            o.c.expires_at <= now,
        )
        .values(
            status=OutboxStatus.EXPIRED.value,
            last_error="expired before its review was decided",
            updated_at=now,
        )
        .returning(*EVENT_COLUMNS)
    )
    rows = list(result)
    emit(conn, [email_event(EventType.EMAIL_EXPIRED, r, OutboxStatus.EXPIRED) for r in rows])
    for row in rows:
        if row.case_id is not None:
            add_history(
                conn,
                row.case_id,
                actor=SYSTEM,
                action="email-expired",
                detail=f"outbox #{row.id} '{row.subject}' not sent: it expired first",
            )
    note_expired(conn, [r.id for r in rows])
    return [r.id for r in rows]
