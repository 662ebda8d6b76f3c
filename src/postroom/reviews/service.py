"""Deciding reviews: approve (with the reviewer's edit) or reject, and reading them.

An approval rebuilds each waiting row's message from its draft with the reviewer's
text and seals it with the account's signing and encryption as they are now; then the
rows are queued. Everything happens in one transaction, guarded on the review still
pending and its rows still waiting: of two people deciding at once, one wins and the
other is told.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, Engine, select, update

from postroom.accounts import AccountStore, EmailAccount
from postroom.accounts.encryption import plan_copies
from postroom.cases.emails import Composer, Draft, Seal
from postroom.cases.store import add_history
from postroom.correspondence import Mailbox, build_message
from postroom.db import tables
from postroom.db.engine import reading
from postroom.db.types import utcnow
from postroom.errors import MessageError, StateError
from postroom.operators import OperatorStore
from postroom.outbox.events import email_event, queued_again
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import OutboxStore
from postroom.outbox.wakeup import announce
from postroom.reviews.drafts import draft_from_json, inline_ids, shown_inline
from postroom.reviews.edits import check_reason, diff, edited_text
from postroom.reviews.escalation import Escalation
from postroom.reviews.expiry import expire_review_rows
from postroom.reviews.models import ReviewRecord, ReviewState, Text
from postroom.reviews.store import ReviewStore, decided_already
from postroom.reviews.telling import EscalationNote, escalation_note
from postroom.webhooks.events import emit
from postroom.webhooks.models import EventType

o = tables.outbox
MAX_ACTOR = 128  # the case history's actor column


@dataclass(frozen=True, slots=True)
class ReviewDetail:
    """A review with what its email looks like: sender, recipients, the diff of an edit."""

    review: ReviewRecord
    account: str | None
    sender: Mailbox | None
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]
    images: tuple[str, ...]  # the inline images' content ids
    diff: str  # empty when the email was not edited
    escalation: EscalationNote | None  # whom its escalation tells or told; None: never


class Reviews:
    """The review queue: read, approve, reject; and the escalation of overdue reviews."""

    def __init__(
        self,
        *,
        engine: Engine,
        accounts: AccountStore,
        seal: Seal,
        composer: Composer,
        operators: OperatorStore,
        outbox: OutboxStore,
    ) -> None:
        self._engine = engine
        self._accounts = accounts
        self._seal = seal
        self._outbox = outbox
        self._operators = operators
        self.store = ReviewStore()
        self.escalation = Escalation(
            engine=engine, composer=composer, operators=operators, outbox=outbox
        )

    # --- reading ------------------------------------------------------------------------

    def search(
        self,
        *,
        state: ReviewState | None = None,
        reviewer: str | None = None,
        case_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReviewRecord]:
        """Reviews, pending first, then newest first."""
        with reading(self._engine) as conn:
            return self.store.search(
                conn, state=state, reviewer=reviewer, case_id=case_id, limit=limit, offset=offset
            )

    def get(self, review_id: int) -> ReviewRecord:
        with reading(self._engine) as conn:
            return self.store.get(conn, review_id)

    def pending_count(self) -> int:
        with reading(self._engine) as conn:
            return self.store.count_pending(conn)

    def pending_of_case(self, case_id: str) -> list[int]:
        with reading(self._engine) as conn:
            return self.store.pending_of_case(conn, case_id)

    def detail(self, review_id: int) -> ReviewDetail:
        """The review, its email's sender and recipients (every copy's) and its diff."""
        with reading(self._engine) as conn:
            review = self.store.get(conn, review_id)
            drafts = self.store.drafts(conn, review_id)
            accounts = conn.execute(
                select(o.c.account).where(o.c.review_id == review_id).order_by(o.c.id)
            ).scalars()
            account = next(iter(accounts), None)
            escalation = escalation_note(conn, self._operators, review)
        emails = [d["email"] for d in drafts]
        lists = {
            name: tuple(dict.fromkeys(Mailbox(b[0], b[1]) for e in emails for b in e[name]))
            for name in ("to", "cc", "bcc")
        }
        first = emails[0] if emails else None
        return ReviewDetail(
            review=review,
            account=account,
            sender=Mailbox(first["sender"][0], first["sender"][1]) if first else None,
            to=lists["to"],
            cc=lists["cc"],
            bcc=lists["bcc"],
            images=inline_ids(drafts),
            diff=diff(review.original, review.edited) if review.edited else "",
            escalation=escalation,
        )

    # --- deciding -----------------------------------------------------------------------

    def approve(
        self,
        review_id: int,
        *,
        by: str,
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
    ) -> ReviewRecord:
        """Queue the review's emails, with the reviewer's text when given (sent as written).

        :class:`StateError` when it was decided already or its emails expired;
        :class:`InvalidFieldsError` naming ``subject``, ``html`` or ``text`` for bad text.
        """
        with reading(self._engine) as conn:
            original = self.store.get(conn, review_id).original
            images = inline_ids(self.store.drafts(conn, review_id))
        edited = edited_text(original, subject=subject, html=html, text=text, images=images)
        expired = False
        with self._engine.begin() as conn:
            now = utcnow()
            review, rows = self._pending(conn, review_id, now=now)
            if rows is None:
                expired = True
            else:
                self.store.decide(
                    conn, review_id, ReviewState.APPROVED, by=by, now=now, edited=edited
                )
                queued = self._queue(conn, review, rows, edited, now=now)
                self._approved_lines(conn, review, queued, edited, by=by)
        if expired:
            raise decided_already(self.get(review_id))
        return self.get(review_id)

    def reject(self, review_id: int, *, by: str, reason: str | None) -> ReviewRecord:
        """End the review's emails ``rejected`` (nothing is sent), with the reason."""
        reason = check_reason(reason)
        expired = False
        with self._engine.begin() as conn:
            now = utcnow()
            review, rows = self._pending(conn, review_id, now=now)
            if rows is None:
                expired = True
            else:
                self.store.decide(
                    conn, review_id, ReviewState.REJECTED, by=by, now=now, reason=reason
                )
                self._reject_rows(conn, review, reason, now=now)
                if review.case_id is not None:
                    ids = ", ".join(f"#{i}" for i in review.outbox_ids)
                    add_history(
                        conn,
                        review.case_id,
                        actor=by[:MAX_ACTOR],
                        action="review-rejected",
                        detail=(
                            f"review #{review.id} (step '{review.step}') rejected by {by}: "
                            f"{reason}; outbox {ids} not sent"
                        ),
                    )
        if expired:
            raise decided_already(self.get(review_id))
        return self.get(review_id)

    def escalate_due(self, *, limit: int = 20) -> int:
        """Notify the managers of reviews pending past their time; how many were escalated."""
        return self.escalation.run(limit=limit)

    def _pending(
        self, conn: Connection, review_id: int, *, now: datetime
    ) -> tuple[ReviewRecord, dict[int, Any] | None]:
        """The pending review and its waiting rows by id; rows None when they expired now
        (then the expiry is written, and committed by the caller before it says so)."""
        review = self.store.get(conn, review_id)
        if review.state is not ReviewState.PENDING:
            raise decided_already(review)
        rows = {
            row.id: row
            for row in conn.execute(
                select(o.c.id, o.c.status, o.c.message, o.c.account, o.c.expires_at)
                .add_columns(o.c.next_attempt_at)
                .where(o.c.review_id == review_id)
            )
        }
        if any(row.expires_at is not None and row.expires_at <= now for row in rows.values()):
            expire_review_rows(conn, review_id, now=now)
            return review, None
        waiting = OutboxStatus.AWAITING_REVIEW.value
        moved = [f"#{i} is {row.status}" for i, row in rows.items() if row.status != waiting]
        if moved or not rows:
            raise StateError(
                f"review #{review_id}: its emails no longer wait for it "
                f"({', '.join(moved) or 'none found'})"
            )
        return review, rows

    def _queue(
        self,
        conn: Connection,
        review: ReviewRecord,
        rows: dict[int, Any],
        edited: Text | None,
        *,
        now: datetime,
    ) -> list[int]:
        accounts: dict[str, EmailAccount] = {}
        queued: list[int] = []
        for item in self.store.drafts(conn, review.id):
            row = rows[int(item["outbox_id"])]
            draft = draft_from_json(item, None if row.message is None else bytes(row.message))
            email = draft.email
            if edited is not None:
                email = replace(
                    email,
                    subject=edited.subject,
                    html=edited.html,
                    text=edited.text,
                    inline=shown_inline(email.inline, edited.html),
                )
            email = replace(email, date=now)  # it is sent from now on, not when composed
            account = accounts.get(row.account)
            if account is None:
                account = accounts[row.account] = self._accounts.get(conn, row.account)
            certificates = _certificates(account, replace(draft, email=email), now=now)
            message = self._seal(conn, account, build_message(email), encrypt_for=certificates)
            due = max(row.next_attempt_at, now)  # a step's delay still holds
            result = conn.execute(
                update(o)
                .where(o.c.id == row.id, o.c.status == OutboxStatus.AWAITING_REVIEW.value)
                .values(
                    message=message,
                    subject=email.subject,
                    status=OutboxStatus.QUEUED.value,
                    next_attempt_at=due,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise StateError(f"outbox email {row.id} changed status meanwhile; look again")
            queued.append(row.id)
        entries = [self._outbox.get(conn, i) for i in queued]
        emit(conn, queued_again(entries))
        announce(conn)  # idle agents wake once this commits
        return queued

    def _approved_lines(
        self,
        conn: Connection,
        review: ReviewRecord,
        queued: list[int],
        edited: Text | None,
        *,
        by: str,
    ) -> None:
        if review.case_id is None:
            return
        ids = ", ".join(f"#{i}" for i in queued)
        how = "with changes" if edited is not None else "as composed"
        add_history(
            conn,
            review.case_id,
            actor=by[:MAX_ACTOR],
            action="review-approved",
            detail=(
                f"review #{review.id} (step '{review.step}') approved by {by} {how}: "
                f"outbox {ids} queued"
            ),
        )
        if edited is not None:
            add_history(
                conn,
                review.case_id,
                actor=by[:MAX_ACTOR],
                action="review-edited",
                detail=f"review #{review.id} edited by {by}:\n{diff(review.original, edited)}",
            )

    def _reject_rows(
        self, conn: Connection, review: ReviewRecord, reason: str, *, now: datetime
    ) -> None:
        result = conn.execute(
            update(o)
            .where(o.c.review_id == review.id, o.c.status == OutboxStatus.AWAITING_REVIEW.value)
            .values(
                status=OutboxStatus.REJECTED.value,
                last_error=f"rejected by its reviewer: {reason}"[:2000],
                updated_at=now,
            )
            .returning(o.c.id, o.c.message_id, o.c.case_id, o.c.account, o.c.subject)
        )
        rows = list(result)
        if len(rows) != len(review.outbox_ids):
            raise StateError(f"review #{review.id}: its emails changed meanwhile; look again")
        events = [
            email_event(
                EventType.EMAIL_REJECTED,
                r,
                OutboxStatus.REJECTED,
                review_id=review.id,
                reason=reason,
            )
            for r in rows
        ]
        emit(conn, events)


def _certificates(
    account: EmailAccount, draft: Draft, *, now: datetime
) -> tuple[x509.Certificate, ...]:
    """The certificates to encrypt to, from the account's encryption as it is now.

    An email composed to be encrypted is never sent in clear: a recipient whose
    certificate went away meanwhile stops the approval.
    """
    recipients = draft.email.envelope_recipients
    plan = plan_copies(account.encryption, recipients, now=now)
    if len(plan) != 1 or (draft.encrypt and not plan[0].encrypted):
        raise MessageError(
            f"the encryption certificates of account {account.name} for "
            f"{', '.join(recipients)} changed since the email was composed; reject it, "
            "and let the case send it again"
        )
    return plan[0].certificates
