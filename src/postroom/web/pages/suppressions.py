"""Suppressions: the list (search, export), add and remove."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.api.schemas.suppressions import as_csv
from postroom.errors import PostroomError
from postroom.suppression import EVERYWHERE
from postroom.web import forms
from postroom.web.pages.bounds import PageNumber
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
PAGE_SIZE = 100
EVERY_ACCOUNT = "(every account)"  # how the scope ``*`` reads on the page


def _where(scope: str) -> str:
    if not scope:
        return "every list it is on"
    return EVERY_ACCOUNT if scope == EVERYWHERE else f"account {scope}"


def _filters(q: str, scope: str) -> dict[str, str]:
    return {k: v for k, v in (("q", q.strip()), ("scope", scope)) if v}


def _link(path: str, params: dict[str, object]) -> str:
    kept = {k: v for k, v in params.items() if v not in ("", None, 1)}
    return f"{path}?{urlencode(kept)}" if kept else path


def _page(
    request: Request,
    auth: Auth,
    *,
    q: str = "",
    scope: str = "",
    number: int = 1,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    number = max(number, 1)
    found = pr.suppressions(
        scope=scope or None,
        search=q.strip() or None,
        limit=PAGE_SIZE + 1,
        offset=(number - 1) * PAGE_SIZE,
    )
    filters = _filters(q, scope)
    return page(
        request,
        "suppressions.html",
        auth,
        title="Suppressions",
        entries=found[:PAGE_SIZE],
        f={"q": q, "scope": scope},
        scopes=[(EVERYWHERE, EVERY_ACCOUNT)] + [(a.name, a.name) for a in pr.accounts()],
        every=EVERYWHERE,
        previous=_link("/suppressions", {**filters, "page": number - 1}) if number > 1 else None,
        following=_link("/suppressions", {**filters, "page": number + 1})
        if len(found) > PAGE_SIZE
        else None,
        export=_link("/suppressions.csv", dict(filters)),
        error=error,
        form=form or {"address": "", "account": EVERYWHERE, "detail": ""},
        status_code=status_code,
    )


@router.get("/suppressions")
def list_suppressions(
    request: Request, auth: LoggedIn, *, q: str = "", scope: str = "", page: PageNumber = 1
) -> Response:
    return _page(request, auth, q=q, scope=scope, number=page)


@router.get("/suppressions.csv")
def export_suppressions(
    request: Request, auth: LoggedIn, *, q: str = "", scope: str = ""
) -> Response:
    entries = postroom_of(request).suppressions(scope=scope or None, search=q.strip() or None)
    return Response(
        as_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@router.post("/suppressions")
def add_suppression(request: Request, auth: LoggedIn, form: Form) -> Response:
    values = {k: forms.text(form, k) for k in ("address", "account", "detail")}
    try:
        entry, new = postroom_of(request).suppress(
            values["address"],
            scope=values["account"] or EVERYWHERE,
            detail=values["detail"],
            operator=auth.username,
        )
    except PostroomError as exc:
        return _page(request, auth, error=forms.problem(exc), form=values, status_code=422)
    if not new:
        return redirect(
            request,
            "/suppressions",
            f"{entry.address} was already {entry.describe()}; left as it is.",
            level="warning",
        )
    where = _where(entry.scope)
    return redirect(request, "/suppressions", f"{entry.address} suppressed for {where}.")


@router.post("/suppressions/remove")
def remove_suppression(
    request: Request, auth: LoggedIn, form: Form, *, address: str, scope: str = ""
) -> Response:
    """``address`` and ``scope`` ride in the URL, so that the confirmation posts them back."""
    where = _where(scope)
    if not forms.checked(form, "confirm"):
        # Asked first, as every delete is: mail to the address is sent again at once.
        return page(
            request,
            "confirm_delete.html",
            auth,
            title=f"Stop suppressing {address}?",
            message=f"Postroom will send to {address} from {where} again.",
            button=f"Stop suppressing {address} for {where}",
            action=_link("/suppressions/remove", {"address": address, "scope": scope}),
            back="/suppressions",
        )
    try:
        postroom_of(request).unsuppress(address, scope=scope or None)
    except PostroomError as exc:
        return redirect(request, "/suppressions", f"Not done: {exc}", level="error")
    return redirect(request, "/suppressions", f"{address} is no longer suppressed for {where}.")
