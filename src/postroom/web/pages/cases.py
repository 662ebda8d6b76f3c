"""Cases: create one, open it (data, status, parties, attachments, history), attach files."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from postroom.cases.data import typed_value
from postroom.cases.service import MAX_ATTACHMENT_BYTES
from postroom.errors import PostroomError
from postroom.web import forms, mail
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()


def _data(value: str) -> dict[str, Any]:
    """Case data typed as a JSON object, or as ``name = value`` lines."""
    if value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"case data is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("case data must be a JSON object")
        return parsed
    # As on the command line: a value that reads as JSON (a number, true) keeps its type.
    return {k: typed_value(v) for k, v in forms.pairs(value, what="case data").items()}


def _cases_page(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        types = pr.case_type_store.list(conn)
        operators = pr.operator_store.list(conn)
    fields = {
        ct.class_name: sorted(
            source.removeprefix("data.")
            for source in ct.parties.values()
            if source.startswith("data.")
        )
        for ct in types
    }
    return page(
        request,
        "cases.html",
        auth,
        status_code=status_code,
        title="Cases",
        cases=pr.cases.recent(limit=50),
        types=types,
        operators=operators,
        fields=fields,
        v=values or {"case_type": "", "operator": "", "data": ""},
        error=error,
    )


@router.get("/cases")
def list_cases(request: Request, auth: LoggedIn) -> Response:
    return _cases_page(request, auth)


@router.post("/cases")
def create_case(request: Request, auth: LoggedIn, form: Form) -> Response:
    values = {
        "case_type": forms.text(form, "case_type"),
        "operator": forms.text(form, "operator"),
        "data": forms.raw(form, "data"),
    }
    try:
        case = postroom_of(request).cases.create(
            values["case_type"], data=_data(values["data"]), operator=values["operator"] or None
        )
    except (PostroomError, ValueError) as exc:
        return _cases_page(request, auth, values=values, error=str(exc), status_code=422)
    notice = f"Case {case.id} created."
    failed = [h.detail for h in case.history if h.action == "email-failed"]
    if failed:
        # The case stands; an email its steps could not build is a failed outbox row.
        notice += f" Its email could not be built: {'; '.join(failed)}"
    return redirect(request, f"/cases/{quote(case.id, safe='')}", notice)


@router.get("/cases/{case_id}")
def show_case(request: Request, auth: LoggedIn, case_id: str) -> Response:
    pr = postroom_of(request)
    case = pr.cases.get(case_id)
    return page(
        request,
        "case.html",
        auth,
        title=f"Case {case.id}",
        case=case,
        emails=pr.outbox(case_id=case.id, limit=100),
        data_json=json.dumps(case.data, indent=2, ensure_ascii=False, default=str),
    )


@router.post("/cases/{case_id}/status")
def set_status(request: Request, auth: LoggedIn, form: Form, case_id: str) -> Response:
    status = forms.text(form, "status")
    target = f"/cases/{quote(case_id, safe='')}"
    try:
        postroom_of(request).cases.set_status(case_id, status)
    except PostroomError as exc:
        return redirect(request, target, f"Status not changed: {exc}")
    return redirect(request, target, f"Status set to {status}.")


@router.post("/cases/{case_id}/attachments")
async def attach(request: Request, auth: LoggedIn, form: Form, case_id: str) -> Response:
    target = f"/cases/{quote(case_id, safe='')}"
    upload = forms.upload(form, "file")
    if upload is None:
        return redirect(request, target, "Choose a file to attach.")
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
        return redirect(request, target, f"Not attached: {exc}")
    return redirect(request, target, f"{upload.filename} attached.")


@router.get("/cases/{case_id}/attachment")
def attachment(
    request: Request, auth: LoggedIn, case_id: str, name: str, show: str = "view"
) -> Response:
    """An attachment: an .eml rendered readably, its HTML body framed, or the file itself."""
    content_type, content = postroom_of(request).cases.attachment(case_id, name)
    is_email = content_type == "message/rfc822" or name.lower().endswith(".eml")
    if show == "body" and is_email:
        return mail.html_body(content)
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
