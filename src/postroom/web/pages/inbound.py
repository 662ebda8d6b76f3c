"""Received mail: the triage list, one message (its HTML only sanitised, in a sandboxed
frame), its raw bytes, and what an admin does with it: attach, open a case, dismiss."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.errors import PostroomError, StateError
from postroom.inbound.models import TRANSITIONS, InboundStatus, ReceivedMessage
from postroom.inbound.parse import parse_mail
from postroom.inbound.search import InboundQuery, search_received, status_counts
from postroom.web import forms, sanitise
from postroom.web.pages.bounds import PageNumber, RecordId
from postroom.web.pages.case_form import field_input, needs_creator, posted_data
from postroom.web.render import page as render
from postroom.web.render import redirect
from postroom.web.session import Form, LoggedIn, postroom_of

router = APIRouter()
PAGE_SIZE = 50


def _link(params: dict[str, object]) -> str:
    """/inbound with these parameters, leaving out empty ones and the first page."""
    kept = {k: v for k, v in params.items() if v not in ("", None) and not (k == "page" and v == 1)}
    return "/inbound?" + urlencode(kept) if kept else "/inbound"


@router.get("/inbound")
def list_inbound(
    request: Request,
    auth: LoggedIn,
    *,
    q: str = "",
    status: str = "",
    account: str = "",
    case: str = "",
    page: PageNumber = 1,
) -> Response:
    pr = postroom_of(request)
    statuses = [s.value for s in InboundStatus]
    query = InboundQuery(
        text=q,
        status=InboundStatus(status) if status in statuses else None,
        account=account.strip() or None,
        case_id=case.strip() or None,
        page=page,
        page_size=PAGE_SIZE,
    )
    with pr.engine.connect() as conn:
        found = search_received(conn, query)
        counts = status_counts(conn)
    filters = {"q": q, "status": status, "account": account, "case": case}
    return render(
        request,
        "inbound.html",
        auth,
        title="Inbound",
        found=found,
        messages=found.items,
        statuses=statuses,
        counts=counts,
        account_names=[a.name for a in pr.accounts()],
        f=filters,
        link=lambda **changes: _link({**filters, "page": found.page, **changes}),
    )


def _actions(message: ReceivedMessage) -> dict[str, bool]:
    """The admin's actions the status table allows for ``message``."""
    allowed = TRANSITIONS[message.status]
    return {
        "can_attach": InboundStatus.MATCHED in allowed,
        "can_create": InboundStatus.NEW_CASE in allowed,
        "can_dismiss": InboundStatus.DISMISSED in allowed,
    }


def _raw(request: Request, message_id: int) -> bytes | None:
    """The message's bytes, or None when they were never kept (too large)."""
    try:
        return postroom_of(request).received_raw(message_id)
    except StateError:
        return None


@router.get("/inbound/{message_id}")
def show_message(
    request: Request, auth: LoggedIn, message_id: RecordId, *, case_type: str = ""
) -> Response:
    pr = postroom_of(request)
    message = pr.received_message(message_id)
    raw = _raw(request, message_id)
    # Read again from the kept bytes, by the parser that never raises: the whole text
    # and the HTML are not stored apart, and a stranger's MIME may be anything.
    parsed = parse_mail(raw) if raw is not None else None
    with pr.engine.connect() as conn:
        types = pr.case_type_store.list(conn)
        operators = pr.operator_store.list(conn)
    # The case type whose fields the create form shows: the one asked for, else one that
    # takes mail, else the first.
    chosen = next((t for t in types if t.class_name == case_type), None) or next(
        (t for t in types if t.inbound is not None and t.inbound.create_case),
        types[0] if types else None,
    )
    base = f"/inbound/{message_id}"
    return render(
        request,
        "inbound_message.html",
        auth,
        title=f"Received #{message_id}",
        received=message,
        parsed=parsed,
        body_url=f"{base}/body",
        raw_url=f"{base}/raw",
        types=types,
        chosen=chosen,
        inputs=field_input(chosen) if chosen is not None else [],
        needs_creator=needs_creator(chosen),
        operators=operators,
        **_actions(message),
    )


@router.get("/inbound/{message_id}/body")
def message_body(request: Request, auth: LoggedIn, message_id: RecordId) -> Response:
    """The received HTML, sanitised, for the sandboxed frame of the message's page."""
    raw = _raw(request, message_id)
    return sanitise.framed(parse_mail(raw).html if raw is not None else None)


@router.get("/inbound/{message_id}/raw")
def message_raw(request: Request, auth: LoggedIn, message_id: RecordId) -> Response:
    """The message as received, served as a download only (never rendered as a page)."""
    try:
        raw = postroom_of(request).received_raw(message_id)
    except StateError as exc:  # too large: its bytes were never read
        return render(
            request, "error.html", auth, status_code=409, title="Not kept", message=str(exc)
        )
    return Response(
        raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="received-{message_id}.eml"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def _done(request: Request, message_id: int, notice: str) -> Response:
    return redirect(request, f"/inbound/{message_id}", notice)


def _refused(
    request: Request, message_id: int, exc: PostroomError | ValueError, *, query: str = ""
) -> Response:
    target = f"/inbound/{message_id}" + (f"?{query}" if query else "")
    return redirect(request, target, f"Not done: {exc}", level="error")


@router.post("/inbound/{message_id}/attach")
def attach(request: Request, auth: LoggedIn, form: Form, message_id: RecordId) -> Response:
    case_id = forms.text(form, "case_id")
    if not case_id:
        return redirect(
            request, f"/inbound/{message_id}", "Give the case id to attach it to.", level="warning"
        )
    try:
        postroom_of(request).attach_received(message_id, case_id, actor=auth.username)
    except PostroomError as exc:
        return _refused(request, message_id, exc)
    return _done(request, message_id, f"Received #{message_id} attached to case {case_id}.")


@router.post("/inbound/{message_id}/case")
def create_case(request: Request, auth: LoggedIn, form: Form, message_id: RecordId) -> Response:
    pr = postroom_of(request)
    class_name = forms.text(form, "class_name")
    operator = forms.text(form, "operator")
    try:
        with pr.engine.connect() as conn:
            ctype = pr.case_type_store.get(conn, class_name)
        case = pr.case_from_received(
            message_id,
            class_name,
            actor=auth.username,
            data=posted_data(form, ctype),
            operator=operator or None,
        )
    except (PostroomError, ValueError) as exc:
        # Back to the same case type's form; the notice names the fields still needed.
        return _refused(request, message_id, exc, query=urlencode({"case_type": class_name}))
    target = f"/cases/{quote(case.id, safe='')}"
    failed = case.failed_emails()
    if failed:
        notice = f"Case {case.id} created from received #{message_id}, but its email could "
        notice += f"not be sent: {'; '.join(failed)}"
        return redirect(request, target, notice, level="error")
    return redirect(request, target, f"Case {case.id} created from received #{message_id}.")


@router.post("/inbound/{message_id}/dismiss")
def dismiss(request: Request, auth: LoggedIn, form: Form, message_id: RecordId) -> Response:
    try:
        postroom_of(request).dismiss_received(message_id, actor=auth.username)
    except PostroomError as exc:
        return _refused(request, message_id, exc)
    return _done(request, message_id, f"Received #{message_id} dismissed from triage.")
