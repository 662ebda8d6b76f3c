"""Reviews waiting too long: the reviewer's manager is told, once, by email.

Run from the sender agents' heartbeat: one indexed read (state, escalate_at) while
nothing is due, and no write lock. A review's ``escalate_at`` is cleared when it is
escalated, so that the read finds only reviews still to escalate; the guarded UPDATE
makes it once, however many agents look at the same time.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime

from sqlalchemy import Connection, Engine, select, update

from postroom.cases import store as case_store
from postroom.cases.emails import Composer, EmailRequest
from postroom.cases.models import Recipient, RecipientKind
from postroom.cases.threads import AUTO_GENERATED, AUTO_SUBMITTED
from postroom.db import tables
from postroom.db.engine import reading
from postroom.db.types import utcnow
from postroom.errors import PostroomError
from postroom.operators import OperatorStore
from postroom.outbox.store import OutboxStore
from postroom.reviews.models import ReviewRecord, ReviewState
from postroom.reviews.store import ReviewStore

log = logging.getLogger("postroom.reviews")
r = tables.reviews
ACTION = "review-escalated"
# How an escalation's history line says why nobody was told (read back by reviews.telling).
NOBODY = "; no manager notified: "
NOT_NOTIFIED = " not notified: "


class Escalation:
    """Finds overdue reviews and notifies each reviewer's manager."""

    def __init__(
        self, *, engine: Engine, composer: Composer, operators: OperatorStore, outbox: OutboxStore
    ) -> None:
        self._engine = engine
        self._composer = composer
        self._operators = operators
        self._outbox = outbox
        self._store = ReviewStore()

    def run(self, *, limit: int = 20, now: datetime | None = None) -> int:
        """Escalate up to ``limit`` overdue reviews, each in its own transaction."""
        now = now or utcnow()
        with reading(self._engine) as conn:
            due = list(
                conn.execute(
                    select(r.c.id)
                    .where(r.c.state == ReviewState.PENDING.value, r.c.escalate_at <= now)
                    .order_by(r.c.escalate_at)
                    .limit(limit)
                ).scalars()
            )
        done = 0
        for review_id in due:
            with self._engine.begin() as conn:
                done += self.escalate(conn, int(review_id), now=now)
        return done

    def escalate(self, conn: Connection, review_id: int, *, now: datetime) -> bool:
        """Mark one review escalated and notify its manager; False if someone else did."""
        claimed = conn.execute(
            update(r)
            .where(
                r.c.id == review_id,
                r.c.state == ReviewState.PENDING.value,
                r.c.escalate_at.is_not(None),
            )
            .values(escalate_at=None, escalated_at=now)
        )
        if claimed.rowcount != 1:
            return False
        review = self._store.get(conn, review_id)
        if review.case_id is None:
            return True
        since = f"{review.requested_at:%Y-%m-%d %H:%M} UTC"
        head = (
            f"review #{review.id} (step '{review.step}') waits for "
            f"{review.reviewer.describe()} since {since}"
        )
        manager, why = manager_of(conn, self._operators, review)
        if manager is None:
            self._line(conn, review, f"{head}{NOBODY}{why}")
            return True
        try:
            outbox_ids = self._notify(conn, review, manager, since=since)
        except PostroomError as exc:
            self._line(conn, review, f"{head}; manager {manager}{NOT_NOTIFIED}{exc}")
            return True
        # Only a manager whose email was queued counts as told.
        conn.execute(update(r).where(r.c.id == review_id).values(escalated_to=manager[:128]))
        ids = ", ".join(f"#{i}" for i in outbox_ids)
        self._line(conn, review, f"{head}; manager {manager} notified by outbox {ids}")
        log.info("review #%s escalated to %s", review.id, manager)
        return True

    def _notify(
        self, conn: Connection, review: ReviewRecord, manager: str, *, since: str
    ) -> list[int]:
        """Queue the manager's email, from the account the case's emails are sent from."""
        assert review.case_id is not None
        case = case_store.load_case(conn, review.case_id, details=False)
        ctype = case_store.CaseTypeStore().get(conn, case.case_type)
        subject = f"Review #{review.id} for case {case.id} is waiting since {since}"
        paragraphs = [
            f"Review #{review.id} of the email '{review.original.subject}' (step "
            f"'{review.step}' of case {case.id}) has been waiting for "
            f"{review.reviewer.describe()} since {since}.",
            f"You are told as the manager of operator {review.reviewer.operator}. "
            "The email is not sent until someone approves it; open the review queue "
            "in Postroom's Studio to approve or reject it.",
        ]
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        request = EmailRequest(
            to=[Recipient(kind=RecipientKind.OPERATOR, value=manager)],
            subject=subject,
            body=body,
            template=False,  # written here, never read as a template
        )
        composed = self._composer.batch(conn).compose(
            request,
            class_name=case.case_type,
            case=case,
            label=ctype.label,
            class_group=ctype.class_group,
            headers=((AUTO_SUBMITTED, AUTO_GENERATED),),
        )
        return self._outbox.enqueue_many(conn, composed.emails)

    def _line(self, conn: Connection, review: ReviewRecord, detail: str) -> None:
        assert review.case_id is not None
        case_store.add_history(
            conn, review.case_id, actor=case_store.SYSTEM, action=ACTION, detail=detail
        )


def manager_of(
    conn: Connection, operators: OperatorStore, review: ReviewRecord
) -> tuple[str | None, str]:
    """The reviewer operator's manager, or why there is none."""
    reviewer = review.reviewer
    if reviewer.operator is None:
        return None, f"the {reviewer.value} party is not an operator"
    operator = operators.find(conn, reviewer.operator)
    if operator is None:
        return None, f"operator {reviewer.operator} no longer exists"
    if operator.reports_to is None:
        return None, f"operator {operator.id} reports to nobody"
    return operator.reports_to, ""
