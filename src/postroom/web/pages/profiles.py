"""Authentication profiles (OAuth 2.0 client settings): list, create, edit, test."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from postroom.accounts.connectivity import Step
from postroom.auth import AuthProfile
from postroom.errors import PostroomError
from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
_FIELDS = ("name", "client_id", "scope", "tenant_id", "authority", "token_endpoint")


def _values(profile: AuthProfile | None) -> dict[str, str]:
    if profile is None:
        return dict.fromkeys(_FIELDS, "")
    return {
        "name": profile.name,
        "client_id": profile.client_id,
        "scope": profile.scope,
        "tenant_id": profile.tenant_id or "",
        "authority": profile.authority,
        "token_endpoint": profile.token_endpoint,
    }


def _form(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, str],
    existing: AuthProfile | None,
    error: str | None = None,
    step: Step | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "profile_form.html",
        auth,
        status_code=status_code,
        title=f"Auth profile {existing.name}" if existing else "New authentication profile",
        v=values,
        existing=existing,
        error=error,
        step=step,
    )


@router.get("/auth-profiles")
def list_profiles(request: Request, auth: LoggedIn) -> Response:
    pr = postroom_of(request)
    users: dict[str, list[str]] = {}
    for account in pr.accounts():
        if account.auth_profile:
            users.setdefault(account.auth_profile, []).append(account.name)
    return page(
        request,
        "profiles.html",
        auth,
        title="Authentication profiles",
        profiles=pr.auth_profiles(),
        users=users,
    )


@router.get("/auth-profiles/new")
def new_profile(request: Request, auth: LoggedIn) -> Response:
    return _form(request, auth, values=_values(None), existing=None)


@router.get("/auth-profiles/{name}")
def show_profile(request: Request, auth: LoggedIn, name: str) -> Response:
    profile = postroom_of(request).auth_profile(name)
    return _form(request, auth, values=_values(profile), existing=profile)


def _save(request: Request, auth: Auth, form: Any, existing: AuthProfile | None) -> Response:
    pr = postroom_of(request)
    values = {f: forms.text(form, f) for f in _FIELDS}
    if existing is not None:
        values["name"] = existing.name
    data: dict[str, Any] = {k: v for k, v in values.items() if v}
    secret = forms.raw(form, "client_secret")
    if secret:
        data["client_secret"] = secret
    elif existing is not None:
        data["client_secret"] = existing.client_secret  # empty keeps the stored secret
    try:
        profile = AuthProfile.model_validate(data)
        change = pr.put_auth_profile(profile)
    except (ValidationError, PostroomError, ValueError) as exc:
        return _form(
            request,
            auth,
            values=values,
            existing=existing,
            error=forms.problem(exc),
            status_code=422,
        )
    return redirect(
        request,
        f"/auth-profiles/{quote(profile.name, safe='')}",
        f"Profile {profile.name}: {change}.",
    )


@router.post("/auth-profiles")
def create_profile(request: Request, auth: LoggedIn, form: Form) -> Response:
    return _save(request, auth, form, None)


@router.post("/auth-profiles/{name}")
def update_profile(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    return _save(request, auth, form, postroom_of(request).auth_profile(name))


@router.post("/auth-profiles/{name}/test")
def test_profile(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    pr = postroom_of(request)
    profile = pr.auth_profile(name)
    step = pr.test_auth_profile(name)
    return _form(request, auth, values=_values(profile), existing=profile, step=step)
