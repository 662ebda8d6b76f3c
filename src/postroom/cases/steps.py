"""Running a case type's steps: the emails they queue and the statuses they set.

Every step runs in the transaction of the change that fired it. A step's email carries
``Auto-Submitted: auto-generated`` (RFC 3834), or ``auto-replied`` when the step answers
received mail, and asks Exchange for no out-of-office answers. Answers are also
counted per recipient, and past the hourly limit they are queued held, so that two
automatic mailers cannot keep each other busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, func, insert, select

from postroom.cases import store
from postroom.cases.emails import ComposedEmail, Composer, EmailRequest
from postroom.cases.models import Case, CaseType, DeliveryMode, SendEmailStep
from postroom.cases.threads import (
    AUTO_GENERATED,
    AUTO_REPLIED,
    AUTO_SUBMITTED,
    SUPPRESS_AUTO_RESPONSES,
)
from postroom.correspondence import Mailbox
from postroom.correspondence.mime import new_message_id
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import PostroomError
from postroom.operators import Operator, OperatorStore
from postroom.outbox.models import NewEmail
from postroom.outbox.status import Hold
from postroom.outbox.store import OutboxStore
from postroom.reviews.models import Reviewer
from postroom.reviews.requesting import request_reviews, resolve_reviewer
from postroom.reviews.store import ReviewStore
from postroom.webhooks.events import emit
from postroom.webhooks.models import Event, EventType

# A status step may set a status whose steps set another: a cycle in a case type must
# not run for ever. Deeper than this, the chain stops with a history line.
MAX_STATUS_CHAIN = 8
LOOP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Answering:
    """The received message steps are answering: its sender, and the hourly answer limit."""

    received_id: int
    sender: Mailbox | None  # None when the message had no usable From
    limit: int  # answers per recipient address and hour before they are held


class StepRunner:
    """Fires the steps of a case type for an event, in the caller's transaction."""

    def __init__(self, *, composer: Composer, outbox: OutboxStore) -> None:
        self._composer = composer
        self._outbox = outbox
        self._reviews = ReviewStore()
        self._operators = OperatorStore()

    def fire(
        self,
        conn: Connection,
        ctype: CaseType,
        case_id: str,
        *,
        event: str,
        status: str | None = None,
        actor: Operator | None = None,
        answering: Answering | None = None,
        depth: int = 0,
    ) -> list[int]:
        """Run the steps of ``event``; returns the outbox ids to deliver immediately."""
        immediate: list[int] = []
        for step in ctype.steps:
            if not step.on.fires_on(event=event, status=status):
                continue
            case = store.load_case(conn, case_id, details=False)
            if step.sends:
                queued = self._queue(conn, ctype, case, step, actor=actor, answering=answering)
                if step.mode is DeliveryMode.IMMEDIATE:
                    immediate.extend(queued)
            if step.set_status is not None:
                immediate.extend(
                    self.enter_status(
                        conn,
                        ctype,
                        case_id,
                        step.set_status,
                        actor=actor,
                        answering=answering,
                        why=f" (step '{label_of(step)}')",
                        depth=depth + 1,
                    )
                )
        return immediate

    def enter_status(
        self,
        conn: Connection,
        ctype: CaseType,
        case_id: str,
        status: str,
        *,
        actor: Operator | None,
        answering: Answering | None = None,
        why: str = "",
        depth: int = 0,
    ) -> list[int]:
        """Move the case to ``status`` and fire that status's steps; staying fires nothing."""
        case = store.load_case(conn, case_id, details=False)
        if case.status == status:
            return []  # entering a status fires its steps; staying in it must not send again
        if depth > MAX_STATUS_CHAIN:
            store.add_history(
                conn,
                case_id,
                actor=store.SYSTEM,
                action="step-stopped",
                detail=(
                    f"status {status} not set{why}: more than {MAX_STATUS_CHAIN} status "
                    "changes in a row (do the case type's steps set statuses in a cycle?)"
                ),
            )
            return []
        store.set_case_status(conn, case_id, status)
        who = actor.id if actor else store.SYSTEM
        store.add_history(
            conn,
            case_id,
            actor=who,
            action="status",
            detail=f"status {case.status} → {status}{why}",
        )
        changed = {
            "case_id": case_id,
            "case_type": ctype.class_name,
            "from": case.status,
            "to": status,
            "actor": who,
        }
        emit(conn, [Event(EventType.CASE_STATUS_CHANGED, changed)])
        return self.fire(
            conn,
            ctype,
            case_id,
            event="status",
            status=status,
            actor=actor,
            answering=answering,
            depth=depth,
        )

    def _queue(
        self,
        conn: Connection,
        ctype: CaseType,
        case: Case,
        step: SendEmailStep,
        *,
        actor: Operator | None,
        answering: Answering | None,
    ) -> list[int]:
        label = label_of(step)
        now = utcnow()
        request = EmailRequest(
            to=step.to,
            cc=step.cc,
            bcc=step.bcc,
            correspondence=step.correspondence,
            subject=step.subject,
            body=step.body,
            include_attachments=step.include_attachments,
            priority=step.priority,
            send_after=now + timedelta(seconds=step.delay_seconds) if step.delay_seconds else None,
            expires_at=(
                now + timedelta(seconds=step.expire_after_seconds)
                if step.expire_after_seconds
                else None
            ),
        )
        auto = AUTO_REPLIED if answering is not None else AUTO_GENERATED
        reviewer: Reviewer | None = None
        try:
            if step.review is not None:
                # Resolved first: an email nobody can review fails like an unbuildable one.
                reviewer = resolve_reviewer(conn, self._operators, step.review, case)
            composed = self._composer.batch(conn).compose(
                request,
                class_name=ctype.class_name,
                case=case,
                actor=actor,
                label=ctype.label,
                class_group=ctype.class_group,
                received_from=answering.sender if answering is not None else None,
                headers=((AUTO_SUBMITTED, auto), SUPPRESS_AUTO_RESPONSES),
                seal=reviewer is None,  # a reviewed email is sealed when it is approved
            )
        except PostroomError as exc:
            # Never a silent drop: the failure is on the case and in the outbox.
            self._outbox.record_unbuildable(
                conn,
                message_id=new_message_id("postroom@postroom.invalid"),
                case_id=case.id,
                account=None,
                subject=label,
                error=str(exc),
            )
            store.add_history(
                conn,
                case.id,
                actor=store.SYSTEM,
                action="email-failed",
                detail=f"step '{label}': {exc}",
            )
            return []
        if step.review is not None and reviewer is not None:
            request_reviews(
                conn,
                reviews=self._reviews,
                outbox=self._outbox,
                composed=composed,
                case=case,
                label=label,
                reviewer=reviewer,
                escalate_after=step.review.escalate_after_seconds,
                tail=lambda email: _account_line(email, composed),
            )
            return []
        queued = []
        for email in composed.emails:
            crowded = self._crowded(conn, email, answering) if answering is not None else []
            if crowded and answering is not None:
                outbox_id = self._outbox.enqueue(conn, email, hold=Hold.LOOP)
                store.add_history(
                    conn,
                    case.id,
                    actor=store.SYSTEM,
                    action="email-held",
                    detail=(
                        f"step '{label}': '{email.subject}' to {', '.join(email.recipients)} "
                        f"held as outbox #{outbox_id} (loop protection, answering received "
                        f"message #{answering.received_id}): "
                        f"{', '.join(crowded)} already had {answering.limit} automatic "
                        "answers in the last hour; retry it to send it anyway"
                    ),
                )
                continue
            outbox_id = self._outbox.enqueue(conn, email)
            queued.append(outbox_id)
            if answering is not None:
                self._count(conn, email, outbox_id)
            store.add_history(
                conn,
                case.id,
                actor=store.SYSTEM,
                action="email-queued",
                detail=_queued_line(label, email, outbox_id, composed),
            )
        return queued

    def _crowded(self, conn: Connection, email: NewEmail, answering: Answering) -> list[str]:
        """The recipients who already had ``limit`` answers within the last hour."""
        t = tables.auto_replies
        since = utcnow() - LOOP_WINDOW
        addresses = sorted({a.lower() for a in email.recipients})
        rows = conn.execute(
            select(t.c.address, func.count())
            .where(t.c.address.in_(addresses), t.c.at > since)
            .group_by(t.c.address)
        )
        counts = {address: int(n) for address, n in rows}
        return [a for a in addresses if counts.get(a, 0) >= answering.limit]

    def _count(self, conn: Connection, email: NewEmail, outbox_id: int) -> None:
        now = utcnow()
        rows = [
            {"address": a, "outbox_id": outbox_id, "at": now}
            for a in sorted({a.lower() for a in email.recipients})
        ]
        conn.execute(insert(tables.auto_replies), rows)


def label_of(step: SendEmailStep) -> str:
    if step.name:
        return step.name
    if step.correspondence:
        return step.correspondence
    return "send email" if step.sends else f"set status {step.set_status}"


def _queued_line(label: str, email: NewEmail, outbox_id: int, composed: ComposedEmail) -> str:
    return (
        f"step '{label}': '{email.subject}' to {', '.join(email.recipients)} queued as outbox "
        f"#{outbox_id}{composed.note(email)}{_account_line(email, composed)}"
    )


def _account_line(email: NewEmail, composed: ComposedEmail) -> str:
    resolution = composed.resolution
    return f"; account {resolution.account}: {resolution.reason}{composed.rendering(email)}"
