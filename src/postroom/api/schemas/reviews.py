"""Reviews before sending as the API shows and takes them (``reviews show --json`` too)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from postroom.reviews.edits import MAX_BODY, MAX_REASON, MAX_SUBJECT
from postroom.reviews.models import ReviewRecord, ReviewState, Text
from postroom.reviews.service import ReviewDetail


class ReviewText(BaseModel):
    """An email's subject, HTML and text parts."""

    subject: str
    html: str
    text: str

    @classmethod
    def of(cls, text: Text) -> ReviewText:
        return cls(subject=text.subject, html=text.html, text=text.text)


class ReviewerView(BaseModel):
    """Who reviews: as the step names them, and who that was for the case."""

    kind: str = Field(description="operator or party")
    value: str = Field(description="The operator id or the party role the step names")
    operator: str | None = Field(description="The operator it resolved to, if any")
    address: str | None = Field(description="Their address, if known")
    description: str


class ReviewView(BaseModel):
    """A review: its state, times, reviewer and the email rows waiting for it."""

    model_config = ConfigDict(frozen=True)

    id: int
    case_id: str | None
    step: str = Field(description="The case type's step that composed the email")
    reviewer: ReviewerView
    state: ReviewState
    requested_at: datetime
    escalate_at: datetime | None = Field(
        description="When it escalates if still waiting (null once escalated or decided)"
    )
    escalated_at: datetime | None = Field(
        description="When it was escalated (see escalated_to for whether anyone was told)"
    )
    escalated_to: str | None = Field(
        description="The manager told (operator id); null before escalation or when nobody "
        "could be told"
    )
    overdue: bool = Field(description="Pending past its escalation time")
    decided_at: datetime | None
    decided_by: str | None = Field(description="api:<token>, cli:<user> or studio:<user>")
    reason: str | None = Field(description="Why it was rejected")
    edited: bool = Field(description="Whether the reviewer changed the email")
    outbox_ids: list[int] = Field(description="The email rows (one per encryption copy)")

    @classmethod
    def of(cls, review: ReviewRecord, *, now: datetime) -> ReviewView:
        return cls(
            id=review.id,
            case_id=review.case_id,
            step=review.step,
            reviewer=_reviewer(review),
            state=review.state,
            requested_at=review.requested_at,
            escalate_at=review.escalate_at,
            escalated_at=review.escalated_at,
            escalated_to=review.escalated_to,
            overdue=review.overdue(now),
            decided_at=review.decided_at,
            decided_by=review.decided_by,
            reason=review.reason,
            edited=review.edited is not None,
            outbox_ids=list(review.outbox_ids),
        )


class ReviewDetailView(ReviewView):
    """A review with its email: as composed, as edited, the diff, and who receives it."""

    account: str | None
    sender: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    images: list[str] = Field(description="Content ids of the inline images it shows")
    original: ReviewText = Field(description="The email as the step composed it")
    edited_text: ReviewText | None = Field(description="The reviewer's text, when changed")
    preview: ReviewText = Field(description="What is (or would be) sent")
    diff: str = Field(description="What the reviewer changed, as unified diffs")
    escalation: str | None = Field(
        description="Whom the escalation told or will tell, or why nobody; null when it never will"
    )

    @classmethod
    def of_detail(cls, detail: ReviewDetail, *, now: datetime) -> ReviewDetailView:
        review = detail.review
        return cls(
            **ReviewView.of(review, now=now).model_dump(),
            account=detail.account,
            sender=detail.sender.address if detail.sender else None,
            to=[b.address for b in detail.to],
            cc=[b.address for b in detail.cc],
            bcc=[b.address for b in detail.bcc],
            images=list(detail.images),
            original=ReviewText.of(review.original),
            edited_text=ReviewText.of(review.edited) if review.edited else None,
            preview=ReviewText.of(review.sent_text),
            diff=detail.diff,
            escalation=detail.escalation.describe() if detail.escalation else None,
        )


class ReviewPage(BaseModel):
    """One page of reviews, pending first; ``next`` is the following page's URL."""

    items: list[ReviewView]
    next: str | None = Field(None, description="URL of the next page; null on the last")


class ReviewApproval(BaseModel):
    """Approve, optionally with a changed subject, HTML or text (sent as written)."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(None, max_length=MAX_SUBJECT)
    html: str | None = Field(None, max_length=MAX_BODY)
    text: str | None = Field(
        None,
        max_length=MAX_BODY,
        description="Derived from the HTML when the HTML is changed and this is not given",
    )


class ReviewRejection(BaseModel):
    """Reject, with the reason (kept in the case history)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=MAX_REASON)


def _reviewer(review: ReviewRecord) -> ReviewerView:
    r = review.reviewer
    return ReviewerView(
        kind=r.kind,
        value=r.value,
        operator=r.operator,
        address=r.address,
        description=r.describe(),
    )
