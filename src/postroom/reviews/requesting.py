"""A reviewed step's emails: who reviews them, the review rows, the rows waiting for them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from postroom.cases import store as case_store
from postroom.cases.emails import ComposedEmail
from postroom.cases.models import Case, RecipientKind, Review
from postroom.errors import MessageError
from postroom.operators import OperatorStore
from postroom.outbox.models import NewEmail
from postroom.outbox.store import OutboxStore
from postroom.reviews.drafts import draft_json
from postroom.reviews.models import Reviewer, Text
from postroom.reviews.store import ReviewStore


def resolve_reviewer(
    conn: Connection, operators: OperatorStore, review: Review, case: Case
) -> Reviewer:
    """The step's reviewer for ``case``; an unknown operator or missing party is an error.

    A reviewer needs no email address: reviewing is done in the Studio or the API.
    """
    by = review.by
    if by.kind is RecipientKind.OPERATOR:
        operator = operators.get(conn, by.value)  # NotFoundError names the id
        return Reviewer("operator", operator.id, operator.id, operator.email)
    party = next((p for p in case.parties if p.role == by.value), None)
    if party is None:
        raise MessageError(f"case {case.id} has no {by.value} work party to review the email")
    return Reviewer("party", party.role, party.operator_id, party.address or None)


def request_reviews(
    conn: Connection,
    *,
    reviews: ReviewStore,
    outbox: OutboxStore,
    composed: ComposedEmail,
    case: Case,
    label: str,
    reviewer: Reviewer,
    escalate_after: int,
    tail: Callable[[NewEmail], str],
) -> None:
    """Write one review per distinct email (language) and its rows awaiting it.

    The encrypted and unencrypted copies of one email are one review: the reviewer's
    text goes into both. ``tail`` ends a history line (account, correspondence, language).
    """
    groups: dict[Text, list[NewEmail]] = {}
    for email in composed.emails:
        draft = composed.drafts[email.message_id].email
        groups.setdefault(Text(draft.subject, draft.html, draft.text), []).append(email)
    for text, emails in groups.items():
        review_id = reviews.request(
            conn,
            case_id=case.id,
            step=label,
            reviewer=reviewer,
            original=text,
            escalate_after=escalate_after,
        )
        ids = outbox.enqueue_many(conn, emails, review_id=review_id)
        reviews.set_drafts(
            conn,
            review_id,
            [
                draft_json(i, composed.drafts[e.message_id])
                for i, e in zip(ids, emails, strict=True)
            ],
        )
        rows = ", ".join(f"#{i}" for i in ids)
        recipients = ", ".join(dict.fromkeys(a for e in emails for a in e.recipients))
        case_store.add_history(
            conn,
            case.id,
            actor=case_store.SYSTEM,
            action="email-review",
            detail=(
                f"step '{label}': '{text.subject}' to {recipients} awaits review by "
                f"{reviewer.describe()} as review #{review_id} (outbox {rows})"
                f"{tail(emails[0])}"
            ),
        )
