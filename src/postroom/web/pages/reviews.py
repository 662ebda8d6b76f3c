"""The review queue: emails waiting for their reviewer; edit, approve, reject.

The email is shown as it would be sent, in a sandboxed frame with the strict policy of
every email body in the Studio; its inline images are shown from the stored message as
``data:`` URLs (the frame may fetch nothing).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from postroom.db import tables
from postroom.db.engine import reading
from postroom.db.types import utcnow
from postroom.errors import PostroomError
from postroom.reviews.models import ReviewState
from postroom.web import forms
from postroom.web.mail import BODY_POLICY
from postroom.web.pages.bounds import MAX_ID, RecordId
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
PAGE_SIZE = 50
STATES = [s.value for s in ReviewState]
PageNumber = Annotated[int, Query(ge=1, le=MAX_ID, alias="page")]


def _by(auth: Auth) -> str:
    return f"studio:{auth.username}"


@router.get("/reviews")
def list_reviews(
    request: Request, auth: LoggedIn, *, state: str = "", page_number: PageNumber = 1
) -> Response:
    chosen = ReviewState(state) if state in STATES else None
    pr = postroom_of(request)
    found = pr.reviews.search(
        state=chosen, limit=PAGE_SIZE + 1, offset=(page_number - 1) * PAGE_SIZE
    )
    kept = {"state": chosen.value} if chosen else {}

    def link(number: int) -> str:
        return "/reviews?" + urlencode({**kept, "page": number})

    return page(
        request,
        "reviews.html",
        auth,
        title="Reviews",
        reviews=found[:PAGE_SIZE],
        pending=pr.reviews.pending_count(),
        state=chosen.value if chosen else "",
        states=STATES,
        now=utcnow(),
        previous=link(page_number - 1) if page_number > 1 else None,
        following=link(page_number + 1) if len(found) > PAGE_SIZE else None,
    )


def _review_page(
    request: Request,
    auth: Auth,
    review_id: int,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    reason: str = "",
    status_code: int = 200,
) -> Response:
    detail = postroom_of(request).reviews.detail(review_id)
    text = detail.review.sent_text
    return page(
        request,
        "review.html",
        auth,
        title=f"Review #{review_id}",
        d=detail,
        r=detail.review,
        now=utcnow(),
        pending=detail.review.state is ReviewState.PENDING,
        form=form or {"subject": text.subject, "html": text.html, "text": text.text},
        reason=reason,
        error=error,
        status_code=status_code,
    )


@router.get("/reviews/{review_id}")
def show_review(request: Request, auth: LoggedIn, review_id: RecordId) -> Response:
    return _review_page(request, auth, review_id)


@router.get("/reviews/{review_id}/body")
def review_body(request: Request, auth: LoggedIn, review_id: RecordId) -> Response:
    """The HTML that is (or would be) sent, for the page's sandboxed frame."""
    pr = postroom_of(request)
    review = pr.reviews.get(review_id)
    html = _with_images(pr, review_id, review.sent_text.html)
    response = HTMLResponse(html)
    response.headers["Content-Security-Policy"] = BODY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.post("/reviews/{review_id}/approve")
def approve(request: Request, auth: LoggedIn, form: Form, review_id: RecordId) -> Response:
    values = {
        "subject": forms.text(form, "subject"),
        "html": forms.raw(form, "html"),
        "text": forms.raw(form, "text"),
    }
    try:
        review = postroom_of(request).reviews.approve(review_id, by=_by(auth), **values)
    except PostroomError as exc:
        return _review_page(
            request, auth, review_id, error=forms.problem(exc), form=values, status_code=422
        )
    how = "with your changes" if review.edited else "as composed"
    ids = ", ".join(f"#{i}" for i in review.outbox_ids)
    notice = f"Review #{review.id} approved {how}: outbox {ids} queued."
    return redirect(request, f"/reviews/{review.id}", notice)


@router.post("/reviews/{review_id}/reject")
def reject(request: Request, auth: LoggedIn, form: Form, review_id: RecordId) -> Response:
    reason = forms.raw(form, "reason")
    try:
        review = postroom_of(request).reviews.reject(review_id, by=_by(auth), reason=reason)
    except PostroomError as exc:
        return _review_page(
            request, auth, review_id, error=forms.problem(exc), reason=reason, status_code=422
        )
    notice = f"Review #{review.id} rejected: nothing was sent."
    return redirect(request, f"/reviews/{review.id}", notice)


def _with_images(pr: Any, review_id: int, html: str) -> str:
    """``cid:`` images as ``data:`` URLs, from the first row's stored message."""
    if "cid:" not in html:
        return html
    with reading(pr.engine) as conn:
        drafts = pr.reviews.store.drafts(conn, review_id)
        if not drafts or not drafts[0]["email"]["inline"]:
            return html
        o = tables.outbox
        raw = conn.execute(select(o.c.message).where(o.c.id == drafts[0]["outbox_id"])).scalar()
    if raw is None:
        return html
    from postroom.web.mail import parse  # noqa: PLC0415 - only when images are shown

    contents = {}
    for part in parse(bytes(raw)).walk():
        payload = None if part.is_multipart() else part.get_payload(decode=True)
        if isinstance(payload, bytes):
            contents[hashlib.sha256(payload).hexdigest()] = payload
    for image in drafts[0]["email"]["inline"]:
        content = contents.get(image["sha256"])
        if content is None:
            continue
        url = f"data:{image['content_type']};base64,{base64.b64encode(content).decode()}"
        html = re.sub(rf"cid:{re.escape(image['content_id'])}\b", url, html)
    return html
