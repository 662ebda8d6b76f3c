"""Reads and writes of the ``reviews`` table; every state change is a guarded UPDATE."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError, StateError
from postroom.reviews.models import Reviewer, ReviewRecord, ReviewState, Text

r = tables.reviews
o = tables.outbox


class ReviewStore:
    """All reads and writes of reviews."""

    def request(
        self,
        conn: Connection,
        *,
        case_id: str | None,
        step: str,
        reviewer: Reviewer,
        original: Text,
        escalate_after: int,
        now: datetime | None = None,
    ) -> int:
        """Write a pending review; its drafts follow once its rows have ids (:meth:`drafts`)."""
        now = now or utcnow()
        result = conn.execute(
            insert(r)
            .values(
                case_id=case_id,
                step=step[:255],
                reviewer_kind=reviewer.kind,
                reviewer=reviewer.value,
                reviewer_operator=reviewer.operator,
                reviewer_address=reviewer.address,
                state=ReviewState.PENDING.value,
                requested_at=now,
                escalate_at=now + timedelta(seconds=escalate_after),
                original=original.to_json(),
                drafts=[],
            )
            .returning(r.c.id)
        )
        return int(result.scalar_one())

    def set_drafts(self, conn: Connection, review_id: int, drafts: list[dict[str, Any]]) -> None:
        conn.execute(update(r).where(r.c.id == review_id).values(drafts=drafts))

    def drafts(self, conn: Connection, review_id: int) -> list[dict[str, Any]]:
        row = conn.execute(select(r.c.drafts).where(r.c.id == review_id)).first()
        if row is None:
            raise NotFoundError(f"no review with id {review_id}")
        return list(row.drafts or [])

    def get(self, conn: Connection, review_id: int) -> ReviewRecord:
        row = conn.execute(select(r).where(r.c.id == review_id)).first()
        if row is None:
            raise NotFoundError(f"no review with id {review_id}")
        return self._records(conn, [row])[0]

    def search(
        self,
        conn: Connection,
        *,
        state: ReviewState | None = None,
        reviewer: str | None = None,
        case_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReviewRecord]:
        """Reviews, the pending ones first, then the newest first."""
        pending_first = (r.c.state != ReviewState.PENDING.value).asc()
        query = select(r).order_by(pending_first, r.c.requested_at.desc(), r.c.id.desc())
        if state is not None:
            query = query.where(r.c.state == state.value)
        if reviewer is not None:
            query = query.where(
                or_(
                    r.c.reviewer == reviewer,
                    r.c.reviewer_operator == reviewer,
                    func.lower(r.c.reviewer_address) == reviewer.lower(),
                )
            )
        if case_id is not None:
            query = query.where(r.c.case_id == case_id)
        rows = list(conn.execute(query.limit(limit).offset(offset)))
        return self._records(conn, rows)

    def count_pending(self, conn: Connection) -> int:
        query = select(func.count()).select_from(r).where(r.c.state == ReviewState.PENDING.value)
        return int(conn.execute(query).scalar_one())

    def pending_of_case(self, conn: Connection, case_id: str) -> list[int]:
        query = select(r.c.id).where(r.c.case_id == case_id, r.c.state == "pending")
        return [int(i) for i in conn.execute(query.order_by(r.c.id)).scalars()]

    def decide(
        self,
        conn: Connection,
        review_id: int,
        new: ReviewState,
        *,
        by: str,
        now: datetime,
        reason: str | None = None,
        edited: Text | None = None,
    ) -> None:
        """Move a pending review to ``new``; a review decided meanwhile is a StateError.

        The UPDATE is guarded on ``pending``: of two people deciding at once, the second
        one's UPDATE finds nothing (PostgreSQL waits for the first one's commit, SQLite's
        write lock serialises them) and is told who came first.
        """
        result = conn.execute(
            update(r)
            .where(r.c.id == review_id, r.c.state == ReviewState.PENDING.value)
            .values(
                state=new.value,
                decided_at=now,
                decided_by=by[:255],
                reason=reason,
                edited=edited.to_json() if edited is not None else None,
                escalate_at=None,
            )
        )
        if result.rowcount != 1:
            raise decided_already(self.get(conn, review_id))

    def expire_of_rows(self, conn: Connection, outbox_ids: Sequence[int]) -> list[ReviewRecord]:
        """Mark expired the pending reviews of these (just expired) rows; returns them."""
        if not outbox_ids:
            return []
        owning = select(o.c.review_id).where(
            o.c.id.in_(list(outbox_ids)), o.c.review_id.is_not(None)
        )
        ids = [int(i) for i in conn.execute(owning.distinct()).scalars()]
        if not ids:
            return []
        now = utcnow()
        done = conn.execute(
            update(r)
            .where(r.c.id.in_(ids), r.c.state == ReviewState.PENDING.value)
            .values(state=ReviewState.EXPIRED.value, decided_at=now, escalate_at=None)
            .returning(r.c.id)
        )
        return [self.get(conn, int(i)) for i in done.scalars()]

    def _records(self, conn: Connection, rows: Sequence[Any]) -> list[ReviewRecord]:
        ids = [row.id for row in rows]
        outbox: dict[int, list[int]] = {i: [] for i in ids}
        if ids:
            found = select(o.c.review_id, o.c.id).where(o.c.review_id.in_(ids)).order_by(o.c.id)
            for review_id, outbox_id in conn.execute(found):
                outbox[review_id].append(outbox_id)
        return [_record(row, tuple(outbox[row.id])) for row in rows]


def decided_already(review: ReviewRecord) -> StateError:
    """The error for deciding a review that is no longer pending: who decided, when."""
    if review.state is ReviewState.EXPIRED:
        return StateError(
            f"review #{review.id} expired: its email expired before it was decided; "
            "nothing was sent"
        )
    when = f" at {review.decided_at:%Y-%m-%d %H:%M} UTC" if review.decided_at else ""
    by = f" by {review.decided_by}" if review.decided_by else ""
    return StateError(f"review #{review.id} was {review.state} already{by}{when}")


def _record(row: Any, outbox_ids: tuple[int, ...]) -> ReviewRecord:
    return ReviewRecord(
        id=row.id,
        case_id=row.case_id,
        step=row.step,
        reviewer=Reviewer(
            kind=row.reviewer_kind,
            value=row.reviewer,
            operator=row.reviewer_operator,
            address=row.reviewer_address,
        ),
        state=ReviewState(row.state),
        requested_at=row.requested_at,
        escalate_at=row.escalate_at,
        escalated_at=row.escalated_at,
        escalated_to=row.escalated_to,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        reason=row.reason,
        original=Text.from_json(row.original),
        edited=Text.from_json(row.edited) if row.edited else None,
        outbox_ids=outbox_ids,
    )
