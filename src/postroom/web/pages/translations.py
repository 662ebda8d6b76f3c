"""A correspondence's translations: the list, a form per language, and a preview in it.

Saving goes through ``apply``, as the main editor's does: the whole record with every
other field kept, checked as a YAML apply checks it (a translation's template must
compile and use only what the sandbox has), and kept as a new version by ``studio:<user>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from postroom.correspondence import Correspondence
from postroom.correspondence.models import Translation
from postroom.correspondence.render import Rendered
from postroom.errors import NotFoundError, PostroomError
from postroom.languages import check_language
from postroom.web import forms
from postroom.web.letters import load_correspondence, save_correspondence
from postroom.web.pages.correspondence import _preview, preview_page
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
_FIELDS = ("language", "subject", "html", "text")


def _url(name: str, language: str = "") -> str:
    more = f"&language={quote(language, safe='')}#translation-form" if language else ""
    return f"/correspondence/translations?name={quote(name, safe='')}{more}"


def _page(
    request: Request,
    auth: Auth,
    record: Correspondence,
    *,
    values: dict[str, str] | None = None,
    editing: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    return page(
        request,
        "correspondence_translations.html",
        auth,
        status_code=status_code,
        title=f"Translations of {record.name}",
        record=record,
        rows=sorted(record.translations.items()),
        v=values or dict.fromkeys(_FIELDS, ""),
        editing=editing,
        error=error,
        cases=pr.cases.recent(limit=30),
    )


@router.get("/correspondence/translations")
def list_translations(request: Request, auth: LoggedIn, name: str, language: str = "") -> Response:
    record = load_correspondence(request, name)
    values = None
    if language:
        translation = record.translations.get(language)
        if translation is None:
            raise NotFoundError(f"correspondence {name!r} has no {language!r} translation")
        values = {
            "language": language,
            "subject": translation.subject or "",
            "html": translation.html,
            "text": translation.text or "",
        }
    return _page(request, auth, record, values=values, editing=language)


def _typed(form: Any) -> dict[str, str]:
    return {
        "language": forms.text(form, "language"),
        "subject": forms.raw(form, "subject"),
        "html": forms.raw(form, "html"),
        "text": forms.raw(form, "text"),
    }


def _with(record: Correspondence, values: dict[str, str], *, replacing: str) -> Correspondence:
    """``record`` with the typed translation (in place of ``replacing``), validated."""
    language = check_language(values["language"], what="translation language")
    if not values["html"].strip():
        raise ValueError(f"translation {language}: the HTML body is empty")
    translation = Translation(
        subject=values["subject"] if not record.is_fragment else None,
        html=values["html"],
        text=values["text"] or None,
    )
    kept = {tag: t for tag, t in record.translations.items() if tag not in (replacing, language)}
    data = record.model_dump()
    data["translations"] = {**kept, language: translation}
    return Correspondence.model_validate(data)


@router.post("/correspondence/translations")
def save_translation(request: Request, auth: LoggedIn, form: Form) -> Response:
    name = forms.text(form, "name")
    editing = forms.text(form, "editing")
    record = load_correspondence(request, name)
    values = _typed(form)
    try:
        updated = _with(record, values, replacing=editing)
        change = save_correspondence(request, auth, updated)
    except (ValidationError, PostroomError, ValueError) as exc:
        return _page(
            request,
            auth,
            record,
            values=values,
            editing=editing,
            error=forms.problem(exc),
            status_code=422,
        )
    language = check_language(values["language"])
    return redirect(request, _url(name), f"Translation {language} of {name}: {change}.")


@router.post("/correspondence/translations/remove")
def remove_translation(request: Request, auth: LoggedIn, form: Form) -> Response:
    name = forms.text(form, "name")
    language = forms.text(form, "language")
    record = load_correspondence(request, name)
    if language not in record.translations:
        raise NotFoundError(f"correspondence {name!r} has no {language!r} translation")
    kept = {tag: t for tag, t in record.translations.items() if tag != language}
    try:
        save_correspondence(request, auth, record.model_copy(update={"translations": kept}))
    except (ValidationError, PostroomError, ValueError) as exc:
        return _page(request, auth, record, error=forms.problem(exc), status_code=422)
    return redirect(request, _url(name), f"Translation {language} of {name} removed.")


@router.post("/correspondence/translations/preview")
def preview_translation(request: Request, auth: LoggedIn, form: Form) -> Response:
    """The typed translation rendered as its email would be, in its language."""
    rendered: Rendered | None = None
    error = None
    try:
        record = load_correspondence(request, forms.text(form, "name"))
        updated = _with(record, _typed(form), replacing=forms.text(form, "editing"))
        language = check_language(forms.text(form, "language"))
        if updated.is_fragment:
            # A fragment previews as its own text: show the translated one.
            t = updated.translations[language]
            updated = updated.model_copy(update={"html": t.html, "text": t.text})
        rendered = _preview(
            postroom_of(request), updated, forms.text(form, "case_id"), language=language
        )
    except (ValidationError, PostroomError, ValueError) as exc:
        error = forms.problem(exc)
    return preview_page(request, rendered, error)
