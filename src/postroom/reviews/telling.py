"""Whom a review's escalation tells (or told), as the review's pages say it.

Before the escalation it is a forecast from the operators as they are now; after it,
``escalated_to`` names the manager whose email was queued, and when nobody was told the
escalation's history line says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from postroom.db import tables
from postroom.operators import OperatorStore
from postroom.reviews.escalation import ACTION, NOBODY, NOT_NOTIFIED, manager_of
from postroom.reviews.models import ReviewRecord, ReviewState

h = tables.case_history


@dataclass(frozen=True, slots=True)
class EscalationNote:
    """Who is (or was) told that a review waits too long, when, or why nobody."""

    at: datetime
    done: bool  # escalated already (else: what happens at ``at`` if still waiting)
    manager: str | None  # the manager told, or who would be; None: nobody
    why: str  # why nobody, when nobody

    def describe(self) -> str:
        """``manager dora told at …``, ``nobody would be told at … (why)`` and the like."""
        when = f"{self.at:%Y-%m-%d %H:%M} UTC"
        if self.done:
            if self.manager is not None:
                return f"manager {self.manager} told at {when}"
            return f"escalated at {when}: nobody to tell" + (f" ({self.why})" if self.why else "")
        if self.manager is not None:
            return f"manager {self.manager} is told at {when} if still waiting"
        return f"nobody would be told at {when}" + (f" ({self.why})" if self.why else "")


def escalation_note(
    conn: Connection, operators: OperatorStore, review: ReviewRecord
) -> EscalationNote | None:
    """What the review's escalation did or will do; None when it never will."""
    if review.escalated_at is not None:
        if review.escalated_to is not None:
            return EscalationNote(review.escalated_at, True, review.escalated_to, "")
        return EscalationNote(review.escalated_at, True, None, _why_nobody(conn, review))
    if review.state is not ReviewState.PENDING or review.escalate_at is None:
        return None
    manager, why = _forecast(conn, operators, review)
    return EscalationNote(review.escalate_at, False, manager, why)


def _forecast(
    conn: Connection, operators: OperatorStore, review: ReviewRecord
) -> tuple[str | None, str]:
    """The manager the escalation would email now, or why it would email nobody."""
    if review.case_id is None:
        return None, "the review has no case"
    manager, why = manager_of(conn, operators, review)
    if manager is None:
        return None, why
    found = operators.find(conn, manager)
    if found is None:
        return None, f"manager {manager} is not an operator"
    if not found.email:
        return None, f"manager {manager} has no email address"
    return manager, ""


def _why_nobody(conn: Connection, review: ReviewRecord) -> str:
    """Why the escalation told nobody, from its line in the case history."""
    if review.case_id is None:
        return "the review has no case"
    lines = conn.execute(
        select(h.c.detail)
        .where(
            h.c.case_id == review.case_id,
            h.c.action == ACTION,
            h.c.detail.startswith(f"review #{review.id} (", autoescape=True),
        )
        .order_by(h.c.id.desc())
        .limit(1)
    ).scalars()
    detail = next(iter(lines), "")
    if NOBODY in detail:
        return detail.rpartition(NOBODY)[2]
    head, sep, rest = detail.partition(NOT_NOTIFIED)
    if sep:
        # "...; manager dora not notified: operator dora has no email address"
        return f"{head.rpartition('; ')[2]}{NOT_NOTIFIED}{rest}".strip()
    return ""
