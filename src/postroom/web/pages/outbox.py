"""The outbox: filter, open a message, retry, cancel, and retry every failed email."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.errors import PostroomError
from postroom.outbox import OutboxStatus
from postroom.outbox.search import OutboxQuery, SortKey, search_outbox
from postroom.outbox.status import TRANSITIONS
from postroom.web import forms, mail
from postroom.web.pages.bounds import MAX_ID, PageNumber, RecordId
from postroom.web.render import Level, redirect
from postroom.web.render import page as render
from postroom.web.session import Form, LoggedIn, postroom_of

router = APIRouter()
PAGE_SIZE = 50
# Bulk retry works in bounded batches so one click cannot run unbounded.
BULK_BATCH = 200
BULK_LIMIT = 10_000


@router.get("/outbox")
def list_outbox(
    request: Request,
    auth: LoggedIn,
    *,
    q: str = "",
    status: str = "",
    account: str = "",
    case: str = "",
    correspondence: str = "",
    version: str = "",
    sort: str = "",
    order: str = "",
    page: PageNumber = 1,
) -> Response:
    pr = postroom_of(request)
    # Read by hand: the filter form sends an empty version, and one out of range is ignored.
    number = int(version) if version.isdigit() and 1 <= int(version) <= MAX_ID else None
    sort_key = SortKey(sort) if sort in {k.value for k in SortKey} else SortKey.CREATED
    descending = order != "asc"
    query = OutboxQuery(
        text=q,
        status=OutboxStatus(status) if status in {s.value for s in OutboxStatus} else None,
        account=account or None,
        case_id=case.strip() or None,
        correspondence=correspondence.strip() or None,
        # A version means nothing without its correspondence.
        version=number if correspondence.strip() else None,
        sort=sort_key,
        descending=descending,
        page=page,
        page_size=PAGE_SIZE,
    )
    with pr.engine.connect() as conn:
        found = search_outbox(conn, query)
    filters = {
        "q": q,
        "status": status,
        "account": account,
        "case": case,
        "correspondence": correspondence,
        "version": number if correspondence.strip() and number else "",
    }
    ordering = {"sort": sort_key.value, "order": "desc" if descending else "asc"}
    return render(
        request,
        "outbox.html",
        auth,
        title="Outbox",
        found=found,
        entries=found.items,
        statuses=[s.value for s in OutboxStatus],
        sort_keys=[k.value for k in SortKey],
        account_names=[a.name for a in pr.accounts()],
        f={**filters, **ordering},
        link=lambda **changes: _link({**filters, **ordering, **changes}),
        counts=pr.outbox_counts(),
    )


def _link(params: dict[str, object]) -> str:
    """/outbox with these parameters, leaving out empty ones and the defaults."""
    defaults = {"sort": SortKey.CREATED.value, "order": "desc", "page": 1}
    kept = {k: v for k, v in params.items() if v not in ("", None) and defaults.get(k) != v}
    return "/outbox?" + urlencode(kept) if kept else "/outbox"


@router.get("/outbox/{outbox_id}")
def show_entry(request: Request, auth: LoggedIn, outbox_id: RecordId) -> Response:
    pr = postroom_of(request)
    entry = pr.outbox_entry(outbox_id)
    with pr.engine.connect() as conn:
        raw = pr.outbox_store.message_bytes(conn, outbox_id)
    return render(
        request,
        "outbox_entry.html",
        auth,
        title=f"Outbox #{outbox_id}",
        entry=entry,
        message=mail.view(raw) if raw else None,
        body_url=f"/outbox/{outbox_id}/body",
        # Offered only where the transition table allows it (never on a sent email).
        can_retry=entry.status is not OutboxStatus.SENDING
        and OutboxStatus.QUEUED in TRANSITIONS[entry.status],
        can_cancel=OutboxStatus.CANCELLED in TRANSITIONS[entry.status],
    )


@router.get("/outbox/{outbox_id}/body")
def entry_body(request: Request, auth: LoggedIn, outbox_id: RecordId) -> Response:
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        raw = pr.outbox_store.message_bytes(conn, outbox_id)
    return mail.html_body(raw)


def _steer(request: Request, outbox_id: int, action: str) -> Response:
    pr = postroom_of(request)
    try:
        entry = pr.retry(outbox_id) if action == "retry" else pr.cancel(outbox_id)
    except PostroomError as exc:
        return redirect(request, f"/outbox/{outbox_id}", f"Not done: {exc}", level="error")
    return redirect(request, f"/outbox/{outbox_id}", f"Email #{outbox_id} is {entry.status}.")


@router.post("/outbox/{outbox_id}/retry")
def retry(request: Request, auth: LoggedIn, form: Form, outbox_id: RecordId) -> Response:
    return _steer(request, outbox_id, "retry")


@router.post("/outbox/{outbox_id}/cancel")
def cancel(request: Request, auth: LoggedIn, form: Form, outbox_id: RecordId) -> Response:
    return _steer(request, outbox_id, "cancel")


@router.post("/outbox/retry-failed")
def retry_failed(request: Request, auth: LoggedIn, form: Form) -> Response:
    pr = postroom_of(request)
    account = forms.text(form, "account") or None
    retried, skipped, seen = 0, 0, 0
    offset = 0
    while seen < BULK_LIMIT:
        batch = pr.outbox(
            status=OutboxStatus.FAILED, account=account, limit=BULK_BATCH, offset=offset
        )
        if not batch:
            break
        seen += len(batch)
        for entry in batch:
            try:
                pr.retry(entry.id)
                retried += 1
            except PostroomError:
                skipped += 1  # never built, or moved meanwhile: it stays failed
        offset = skipped  # retried rows left the failed list; skipped ones are still in it
    notice = f"{retried} failed emails queued again."
    if skipped:
        notice += f" {skipped} could not be retried (open them for the reason)."
    level: Level = "warning" if skipped else "success"
    return redirect(request, "/outbox?status=failed", notice, level=level)
