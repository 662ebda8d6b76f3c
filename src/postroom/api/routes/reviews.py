"""Reviews before sending: the queue, one review, approve (with edits) and reject.

Reviewing is an operator's act for the organisation, not an application's: every
route needs an ``admin`` token, and the decision is recorded as ``api:<token name>``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from postroom.api.auth import require
from postroom.api.problems import problem_responses
from postroom.api.schemas.reviews import (
    ReviewApproval,
    ReviewDetailView,
    ReviewPage,
    ReviewRejection,
    ReviewView,
)
from postroom.app import Postroom
from postroom.db.types import utcnow
from postroom.identity import ApiToken, Scope
from postroom.reviews.models import ReviewState

MAX_PAGE = 200
ReviewId = Annotated[int, Path(ge=1, le=2**31 - 1)]
AdminToken = Annotated[ApiToken, Depends(require(Scope.ADMIN))]


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(tags=["reviews"], responses=problem_responses(401, 403))
    reviews = postroom.reviews

    @api.get(
        "/reviews",
        summary="List reviews, pending first (admin)",
        responses=problem_responses(401, 403, 422),
    )
    def list_reviews(
        request: Request,
        _token: AdminToken,
        *,
        state: Annotated[
            ReviewState | None, Query(description="Only reviews in this state")
        ] = None,
        reviewer: Annotated[
            str | None,
            Query(min_length=1, max_length=320, description="An operator id, role or address"),
        ] = None,
        case_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> ReviewPage:
        """Emails waiting for (or decided by) a reviewer; ``reviewer`` matches the step's
        operator id or party role, the operator it resolved to, or the address."""
        rows = reviews.search(
            state=state, reviewer=reviewer, case_id=case_id, limit=limit + 1, offset=offset
        )
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(limit=limit, offset=offset + limit))
        now = utcnow()
        return ReviewPage(items=[ReviewView.of(r, now=now) for r in rows[:limit]], next=following)

    @api.get(
        "/reviews/{review_id}",
        summary="One review with its email (admin)",
        responses=problem_responses(401, 403, 404),
    )
    def get_review(review_id: ReviewId, _token: AdminToken) -> ReviewDetailView:
        """The review, its email as composed and as edited, the diff and the recipients."""
        return ReviewDetailView.of_detail(reviews.detail(review_id), now=utcnow())

    @api.post(
        "/reviews/{review_id}/approve",
        summary="Approve a review: its email is queued (admin)",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    def approve_review(
        review_id: ReviewId, token: AdminToken, body: ReviewApproval | None = None
    ) -> ReviewDetailView:
        """Queue the email, with the changed subject, HTML or text when given. The text
        is sent as written (it is not a template). 409 when the review was decided
        already or its email expired."""
        edit = body or ReviewApproval()
        reviews.approve(
            review_id,
            by=f"api:{token.name}",
            subject=edit.subject,
            html=edit.html,
            text=edit.text,
        )
        return ReviewDetailView.of_detail(reviews.detail(review_id), now=utcnow())

    @api.post(
        "/reviews/{review_id}/reject",
        summary="Reject a review: nothing is sent (admin)",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    def reject_review(
        review_id: ReviewId, body: ReviewRejection, token: AdminToken
    ) -> ReviewDetailView:
        """End the email ``rejected`` with the reason; 409 when decided already."""
        reviews.reject(review_id, by=f"api:{token.name}", reason=body.reason)
        return ReviewDetailView.of_detail(reviews.detail(review_id), now=utcnow())

    return api
