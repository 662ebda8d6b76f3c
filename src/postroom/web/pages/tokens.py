"""API tokens: create (the value is shown once, on the answer page only), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.errors import NotFoundError, PostroomError
from postroom.identity import IssuedToken, Scope
from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()


def _page(
    request: Request,
    auth: Auth,
    *,
    issued: IssuedToken | None = None,
    error: str | None = None,
    name: str = "",
    status_code: int = 200,
) -> Response:
    response = page(
        request,
        "tokens.html",
        auth,
        title="API tokens",
        tokens=postroom_of(request).identity.list_tokens(),
        scopes=[s.value for s in Scope],
        issued=issued,
        error=error,
        name=name,
        status_code=status_code,
    )
    # The one page that shows a token's value must not be kept by any cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/tokens")
def list_tokens(request: Request, auth: LoggedIn) -> Response:
    return _page(request, auth)


@router.post("/tokens")
def create_token(request: Request, auth: LoggedIn, form: Form) -> Response:
    name = forms.text(form, "name")
    try:
        scope = Scope(forms.text(form, "scope"))
        issued = postroom_of(request).identity.create_token(name=name, scopes={scope})
    except (ValueError, PostroomError) as exc:
        return _page(request, auth, error=forms.problem(exc), name=name, status_code=422)
    # Rendered, not redirected: a redirect would have to carry the value somewhere.
    return _page(request, auth, issued=issued, status_code=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, auth: LoggedIn, form: Form, token_id: str) -> Response:
    identity = postroom_of(request).identity
    if not forms.checked(form, "confirm"):
        # Asked first, as every delete is, and without JavaScript: applications still
        # using the token stop working the moment it is revoked.
        token = next((t for t in identity.list_tokens() if t.id == token_id), None)
        if token is None:
            raise NotFoundError(f"no API token with id {token_id!r}")
        return page(
            request,
            "confirm_delete.html",
            auth,
            title=f"Revoke token {token.name} ({token.id})?",
            message=f"Revoke token {token.name} ({token.id})? Applications using it will get 401.",
            button=f"Revoke token {token.name} ({token.id})",
            action=f"/tokens/{token.id}/revoke",
            back="/tokens",
        )
    token = identity.revoke_token(token_id)
    return redirect(request, "/tokens", f"Token {token.id} ({token.name}) revoked.")
