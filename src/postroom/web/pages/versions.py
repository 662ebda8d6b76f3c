"""A correspondence's versions: history, diff, the emails each sent, restore."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from postroom.correspondence import versions
from postroom.correspondence.diffs import VersionDiff
from postroom.db.engine import reading
from postroom.errors import PostroomError
from postroom.web import forms
from postroom.web.pages.bounds import MAX_ID
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
Number = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def versions_url(name: str, **more: object) -> str:
    """The versions page of ``name`` (with ``from``/``to`` for a diff)."""
    return "/correspondence/versions?" + urlencode({"name": name, **more})


def emails_url(name: str, number: int) -> str:
    """The outbox list of the emails rendered from version ``number`` of ``name``."""
    return "/outbox?" + urlencode({"correspondence": name, "version": number})


def _pair(history: versions.History, old: int | None, new: int | None) -> tuple[int, int] | None:
    """The versions to compare: as asked, else the one before the current and the current."""
    latest = history.current if history.current is not None else history.latest
    if old is None and new is None:
        numbers = [v.number for v in history.versions]
        before = [n for n in numbers if n < latest]
        return None if not before else (before[0], latest)
    return (old or latest, new or latest)


@router.get("/correspondence/versions")
def list_versions(
    request: Request,
    auth: LoggedIn,
    name: str,
    old: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID)] = None,
    new: Annotated[int | None, Query(alias="to", ge=1, le=MAX_ID)] = None,
) -> Response:
    return _versions_page(request, auth, name, old, new)


def _versions_page(
    request: Request,
    auth: Auth,
    name: str,
    old: int | None,
    new: int | None,
    *,
    error: str | None = None,
) -> Response:
    pr = postroom_of(request)
    diff: VersionDiff | None = None
    with reading(pr.engine) as conn:
        history = versions.history(conn, name)  # an unknown name: the not-found page
        pair = _pair(history, old, new)
        known = {v.number for v in history.versions}
        if pair is not None and not set(pair) <= known:
            # A version chosen that does not exist: the history still shows, with the reason.
            missing = ", ".join(str(n) for n in sorted(set(pair) - known))
            error, pair = f"{name} has no version {missing}.", None
        if pair is not None:
            diff = versions.diff(conn, name, *pair)
    return page(
        request,
        "correspondence_versions.html",
        auth,
        title=f"Versions of {name}",
        name=name,
        history=history,
        diff=diff,
        pair=pair,
        error=error,
        emails_url=emails_url,
        versions_url=versions_url,
    )


@router.get("/correspondence/versions/show")
def show_version(request: Request, auth: LoggedIn, name: str, number: Number = None) -> Response:
    """One version's content as it was saved (the outbox links an email's version here)."""
    pr = postroom_of(request)
    with reading(pr.engine) as conn:
        history = versions.history(conn, name)  # an unknown name: the not-found page
        chosen = number or history.latest
        if chosen not in {v.number for v in history.versions}:
            # The history instead, saying so: a number typed or kept from another database.
            missing = f"{name} has no version {chosen}."
            return _versions_page(request, auth, name, None, None, error=missing)
        found = versions.info(conn, name, chosen)
        record = versions.version(conn, name, chosen)
    return page(
        request,
        "correspondence_version.html",
        auth,
        title=f"{name}, version {chosen}",
        name=name,
        info=found,
        record=record,
        history=history,
        emails_url=emails_url,
        versions_url=versions_url,
    )


@router.post("/correspondence/versions/restore")
def restore_version(request: Request, auth: LoggedIn, form: Form) -> Response:
    """Without ``confirm``: what restoring would change; with it, the restore itself."""
    pr = postroom_of(request)
    name = forms.text(form, "name")
    number = _form_number(form)
    back = versions_url(name)
    if number is None:
        return redirect(request, back, "Choose a version number to restore.", level="error")
    if not forms.checked(form, "confirm"):
        with reading(pr.engine) as conn:
            history = versions.history(conn, name)
            versions.info(conn, name, number)  # 404 for a version that does not exist
            latest = history.current if history.current is not None else history.latest
            diff = versions.diff(conn, name, latest, number)
        return page(
            request,
            "correspondence_restore.html",
            auth,
            title=f"Restore version {number} of {name}?",
            name=name,
            number=number,
            history=history,
            diff=diff,
            back=back,
        )
    try:
        done = versions.restore(pr, name, number, by=f"studio:{auth.username}")
    except PostroomError as exc:
        return redirect(request, back, f"Not restored: {exc}", level="error")
    if done.change == "unchanged":
        return redirect(
            request, back, f"Version {number} is the current content already: nothing saved."
        )
    return redirect(
        request,
        versions_url(name, **{"from": number, "to": done.current}),
        f"Version {number} of {name} restored as version {done.current}.",
    )


def _form_number(form: FormData) -> int | None:
    text = forms.text(form, "number")
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        return None
    return int(text)
