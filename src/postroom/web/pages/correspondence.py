"""Correspondence: list, edit and save templates, with a live preview against a case."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from postroom.accounts import resolve_account
from postroom.app import Postroom
from postroom.cases.context import first_party, render_context
from postroom.cases.emails import EmailRequest
from postroom.cases.models import CaseType
from postroom.cases.references import correspondence_references
from postroom.cases.samples import SAMPLE_OPERATOR, SAMPLE_PARTY, sample_case
from postroom.cases.store import load_case
from postroom.correspondence import Correspondence, Renderer
from postroom.correspondence.render import Rendered
from postroom.errors import PostroomError
from postroom.languages import DEFAULT_LANGUAGE
from postroom.web import forms
from postroom.web.mail import BODY_POLICY, with_images
from postroom.web.render import page, redirect, templates
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
_FIELDS = ("name", "language", "subject", "html", "text")


@router.get("/correspondence")
def list_correspondence(request: Request, auth: LoggedIn) -> Response:
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        records = sorted(pr.correspondence_store.all(conn).values(), key=lambda r: r.name)
    return page(request, "correspondence.html", auth, title="Correspondence", records=records)


def _editor(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, str],
    existing: bool,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    stored: Correspondence | None = None
    version = None
    if existing:
        with pr.engine.connect() as conn:
            stored = pr.correspondence_store.find(conn, values["name"])
            version = pr.correspondence_store.versions(conn).get(values["name"])
    return page(
        request,
        "correspondence_form.html",
        auth,
        status_code=status_code,
        title=f"Correspondence {values['name']}" if existing else "New correspondence",
        v=values,
        existing=existing,
        error=error,
        cases=pr.cases.recent(limit=30),
        case_id=request.query_params.get("case", ""),
        translations=stored.translations if stored is not None else {},
        images=stored.images if stored is not None else {},
        version=version,
    )


@router.get("/correspondence/new")
def new_correspondence(request: Request, auth: LoggedIn) -> Response:
    values = {**dict.fromkeys(_FIELDS, ""), "language": DEFAULT_LANGUAGE}
    return _editor(request, auth, values=values, existing=False)


@router.get("/correspondence/edit")
def edit_correspondence(request: Request, auth: LoggedIn, name: str) -> Response:
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        record = pr.correspondence_store.get(conn, name)
    values = {
        "name": record.name,
        "language": record.language,
        "subject": record.subject or "",
        "html": record.html,
        "text": record.text or "",
    }
    return _editor(request, auth, values=values, existing=True)


def _typed(form: Any) -> dict[str, str]:
    return {
        "name": forms.text(form, "name"),
        "language": forms.text(form, "language") or DEFAULT_LANGUAGE,
        "subject": forms.raw(form, "subject"),
        "html": forms.raw(form, "html"),
        "text": forms.raw(form, "text"),
    }


def _record(values: dict[str, str], stored: Correspondence | None = None) -> Correspondence:
    """The record as typed; what this form does not show (translations, images) is kept."""
    return Correspondence(
        name=values["name"],
        subject=values["subject"] or None,  # no subject: a fragment for other templates
        html=values["html"],
        text=values["text"] or None,
        language=values["language"],
        translations=stored.translations if stored is not None else {},
        images=stored.images if stored is not None else {},
    )


@router.post("/correspondence")
def save_correspondence(request: Request, auth: LoggedIn, form: Form) -> Response:
    values = _typed(form)
    existing = forms.checked(form, "existing")
    pr = postroom_of(request)
    try:
        stored = None
        if existing:
            with pr.engine.connect() as conn:
                stored = pr.correspondence_store.find(conn, values["name"])
        record = _record(values, stored)
        # The same validation as `postroom apply`: every template must still compile.
        report = pr.apply(
            {"correspondence": [record.model_dump(mode="json", exclude_none=True)]},
            by=f"studio:{auth.username}",
        )
    except (ValidationError, PostroomError, ValueError) as exc:
        return _editor(
            request,
            auth,
            values=values,
            existing=existing,
            error=forms.problem(exc),
            status_code=422,
        )
    [(_, name, change)] = report.changes
    return redirect(
        request,
        f"/correspondence/edit?name={quote(name, safe='')}",
        f"Correspondence {name}: {change}.",
    )


def _preview(
    pr: Postroom, record: Correspondence, case_id: str, *, language: str | None = None
) -> Rendered:
    """Render ``record`` as an email of the chosen case would be (or with no case), in
    ``language`` when it has that translation."""
    with pr.engine.connect() as conn:
        records = pr.correspondence_store.all(conn)
        records[record.name] = record
        renderer = Renderer(records)
        renderer.check_source(record.html, what="html", fragment=record.is_fragment)
        # One connection throughout: on SQLite a second one would wait for this one's lock.
        if case_id:
            case = load_case(conn, case_id)
            ctype: CaseType | None = pr.case_type_store.get(conn, case.case_type)
            actor = pr.operator_store.find(conn, case.created_by) if case.created_by else None
        else:
            # No case chosen: a sample case of the type whose step sends this letter (its
            # declared fields filled in), so the letter shows, not a missing-value error.
            ctype = next(
                (
                    t
                    for t in pr.case_type_store.list(conn)
                    if any(s.correspondence == record.name for s in t.steps)
                ),
                None,
            )
            actor = next(iter(pr.operator_store.list(conn)), SAMPLE_OPERATOR)
            reads = correspondence_references(records, record.name)
            case = sample_case(ctype, reads=reads, creator=actor)
        names = {a.name for a in pr.account_store.list(conn)}
        class_name = ctype.class_name if ctype else "Default"
        resolution = resolve_account(
            class_name, names.__contains__, class_group=ctype.class_group if ctype else None
        )
        account = pr.account_store.get(conn, resolution.account)
        party: dict[str, Any] = {}
        if ctype is not None:
            # The party of the first step sending this correspondence, as the step would.
            step = next((s for s in ctype.steps if s.correspondence == record.name), None)
            if step is not None:
                request = EmailRequest(to=step.to, cc=step.cc, bcc=step.bcc)
                party = first_party(request, case)
        if not party and not case_id:
            party = SAMPLE_PARTY.model_dump()
        context = render_context(
            case,
            label=ctype.label if ctype else "",
            class_name=class_name,
            actor=actor,
            account=account,
            party=party,
        )
    if record.is_fragment:
        return renderer.render_inline(subject="(a fragment)", body=record.html, context=context)
    return renderer.render(record.name, context, language=language)


@router.post("/correspondence/preview")
def preview(request: Request, auth: LoggedIn, form: Form) -> Response:
    values = _typed(form)
    rendered: Rendered | None = None
    error = None
    try:
        pr = postroom_of(request)
        with pr.engine.connect() as conn:  # the stored images, which this form does not post
            stored = pr.correspondence_store.find(conn, values["name"]) if values["name"] else None
        record = _record({**values, "name": values["name"] or "(unsaved)"}, stored)
        rendered = _preview(pr, record, forms.text(form, "case_id"))
    except (ValidationError, PostroomError, ValueError) as exc:
        error = forms.problem(exc)
    return preview_page(request, rendered, error)


def preview_page(request: Request, rendered: Rendered | None, error: str | None) -> Response:
    """The preview frame: the rendered email with its images, under the bodies' policy."""
    if rendered is not None:  # the images as the email carries them, in this frame only
        shown = {part.content_id: part.content for part in rendered.inline}
        rendered = replace(rendered, html=with_images(rendered.html, shown))
    response: HTMLResponse = templates.TemplateResponse(
        request, "preview.html", {"rendered": rendered, "error": error}
    )
    response.headers["Content-Security-Policy"] = BODY_POLICY
    return response
