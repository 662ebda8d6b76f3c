"""Cases: create one, open it (data, status, parties, attachments, history), attach files."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from postroom.cases.models import CaseType
from postroom.cases.service import MAX_ATTACHMENT_BYTES
from postroom.cases.store import CaseQuery, CaseSort, search_cases
from postroom.errors import InvalidFieldsError, NotFoundError, PostroomError
from postroom.web import forms, mail
from postroom.web.pages.case_form import (
    creation_emails,
    field_errors,
    field_input,
    needs_creator,
    posted_data,
    posted_values,
)
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of
from postroom.web.timeline import timeline

router = APIRouter()
PAGE_SIZE = 50


def _link(params: dict[str, object]) -> str:
    """/cases with these parameters, leaving out empty ones and the defaults."""
    defaults = {"sort": CaseSort.CREATED.value, "order": "desc", "page": 1}
    kept = {k: v for k, v in params.items() if v not in ("", None) and defaults.get(k) != v}
    return "/cases?" + urlencode(kept) if kept else "/cases"


def _cases_page(
    request: Request,
    auth: Auth,
    *,
    case_type: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    params = request.query_params
    sort = params.get("sort", "")
    sort_key = CaseSort(sort) if sort in {k.value for k in CaseSort} else CaseSort.CREATED
    descending = params.get("order", "") != "asc"
    try:
        page_number = max(int(params.get("page", "1")), 1)
    except ValueError:
        page_number = 1
    query = CaseQuery(
        text=params.get("q", ""),
        sort=sort_key,
        descending=descending,
        page=page_number,
        page_size=PAGE_SIZE,
    )
    with pr.engine.connect() as conn:
        types = pr.case_type_store.list(conn)
        operators = pr.operator_store.list(conn)
        found = search_cases(conn, query)
    chosen_name = case_type or params.get("case_type", "")
    chosen: CaseType | None = next(
        (t for t in types if t.class_name == chosen_name), types[0] if types else None
    )
    listing = {
        "q": query.text,
        "sort": sort_key.value,
        "order": "desc" if descending else "asc",
    }
    return page(
        request,
        "cases.html",
        auth,
        status_code=status_code,
        title="Cases",
        found=found,
        cases=found.items,
        f=listing,
        sort_keys=[k.value for k in CaseSort],
        link=lambda **changes: _link({**listing, "page": found.page, **changes}),
        types=types,
        chosen=chosen,
        inputs=field_input(chosen) if chosen is not None else [],
        emails=creation_emails(chosen),
        needs_creator=needs_creator(chosen),
        operators=operators,
        v=values or {},
        errors=errors or {},
        error=error,
    )


@router.get("/cases")
def list_cases(request: Request, auth: LoggedIn) -> Response:
    return _cases_page(request, auth)


@router.post("/cases")
def create_case(request: Request, auth: LoggedIn, form: Form) -> Response:
    pr = postroom_of(request)
    name = forms.text(form, "case_type")
    operator = forms.text(form, "operator")
    ctype: CaseType | None = None
    shown = {"operator": operator, **posted_values(form)}
    try:
        with pr.engine.connect() as conn:
            ctype = pr.case_type_store.get(conn, name)
        data = posted_data(form, ctype)
        case = pr.cases.create(name, data=data, operator=operator or None)
    except InvalidFieldsError as exc:
        by_field, others = field_errors(exc, ctype)
        message = "; ".join(others) if others else "check the fields marked below."
        return _cases_page(
            request,
            auth,
            case_type=name,
            values=shown,
            errors=by_field,
            error=message,
            status_code=422,
        )
    except (PostroomError, ValueError) as exc:
        if isinstance(exc, NotFoundError) and ctype is None:
            name = ""
        return _cases_page(
            request, auth, case_type=name, values=shown, error=str(exc), status_code=422
        )
    target = f"/cases/{quote(case.id, safe='')}"
    failed = case.failed_emails()
    if failed:
        # The case stands, but what its creation was to send did not go: an error to
        # see now, not a success to read past.
        notice = f"Case {case.id} created, but its email could not be sent: {'; '.join(failed)}"
        return redirect(request, target, notice, level="error")
    return redirect(request, target, f"Case {case.id} created.")


@router.get("/cases/{case_id}")
def show_case(request: Request, auth: LoggedIn, case_id: str) -> Response:
    pr = postroom_of(request)
    case = pr.cases.get(case_id)
    with pr.engine.connect() as conn:
        try:
            fields = pr.case_type_store.get(conn, case.case_type).fields
        except NotFoundError:  # its type was deleted: the data is still shown
            fields = []
    return page(
        request,
        "case.html",
        auth,
        title=f"Case {case.id}",
        case=case,
        fields=fields,
        field_names={f.name for f in fields},
        emails=pr.outbox(case_id=case.id, limit=100),
        reviews=pr.reviews.pending_of_case(case.id),
        conversation=timeline(case, pr.conversation(case.id)),
        data_json=json.dumps(case.data, indent=2, ensure_ascii=False, default=str),
    )


@router.post("/cases/{case_id}/status")
def set_status(request: Request, auth: LoggedIn, form: Form, case_id: str) -> Response:
    status = forms.text(form, "status")
    target = f"/cases/{quote(case_id, safe='')}"
    cases = postroom_of(request).cases
    try:
        before = len(cases.get(case_id).history)
        failed = cases.set_status(case_id, status).failed_emails(since=before)
    except PostroomError as exc:
        return redirect(request, target, f"Status not changed: {exc}", level="error")
    if failed:
        notice = f"Status set to {status}, but its email could not be sent: {'; '.join(failed)}"
        return redirect(request, target, notice, level="error")
    return redirect(request, target, f"Status set to {status}.")


@router.post("/cases/{case_id}/attachments")
async def attach(request: Request, auth: LoggedIn, form: Form, case_id: str) -> Response:
    target = f"/cases/{quote(case_id, safe='')}"
    upload = forms.upload(form, "file")
    if upload is None:
        return redirect(request, target, "Choose a file to attach.", level="warning")
    content = await upload.read(MAX_ATTACHMENT_BYTES + 1)
    try:
        await run_in_threadpool(
            lambda: postroom_of(request).cases.attach(
                case_id,
                name=upload.filename or "attachment",
                content=content,
                content_type=upload.content_type,
            )
        )
    except PostroomError as exc:
        return redirect(request, target, f"Not attached: {exc}", level="error")
    return redirect(request, target, f"{upload.filename} attached.")


@router.get("/cases/{case_id}/attachment")
def attachment(
    request: Request, auth: LoggedIn, case_id: str, name: str, show: str = "view"
) -> Response:
    """An attachment: an .eml rendered readably, its HTML body framed, or the file itself."""
    content_type, content = postroom_of(request).cases.attachment(case_id, name)
    is_email = content_type == "message/rfc822" or name.lower().endswith(".eml")
    if show == "body" and is_email:
        return mail.case_email_body(name, content)
    if show == "view" and is_email:
        return page(
            request,
            "message.html",
            auth,
            title=name,
            message=mail.view(content),
            body_url=f"/cases/{quote(case_id, safe='')}/attachment?name={quote(name)}&show=body",
            download_url=(
                f"/cases/{quote(case_id, safe='')}/attachment?name={quote(name)}&show=download"
            ),
            back_url=f"/cases/{quote(case_id, safe='')}",
            back_label=f"Case {case_id}",
        )
    # Served as a download only, never rendered as a page of the studio.
    return Response(
        content,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
