"""Logging in and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import (
    Form,
    LoggedIn,
    check_login_csrf,
    clear_session_cookie,
    log_in_throttled,
    new_login_token,
    postroom_of,
    read_form,
    safe_next,
    set_device_cookie,
    set_login_cookie,
    set_session_cookie,
)

router = APIRouter()


def _login_page(
    request: Request, *, error: str | None = None, username: str = "", status_code: int = 200
) -> Response:
    token = new_login_token()
    response = page(
        request,
        "login.html",
        None,
        status_code=status_code,
        title="Log in",
        login_token=token,
        error=error,
        username=username,
        next=safe_next(request.query_params.get("next")),
    )
    set_login_cookie(response, request, token)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def log_in(request: Request) -> Response:
    form = await read_form(request)
    check_login_csrf(request, form)
    forms.check_text(form)
    username = forms.text(form, "username")
    password = forms.raw(form, "password")
    opened = await log_in_throttled(request, username=username, password=password)
    if opened is None:
        return _login_page(
            request, error="Wrong user name or password.", username=username, status_code=401
        )
    session_id, _ = opened
    response = redirect(request, safe_next(forms.text(form, "next")))
    set_session_cookie(response, request, session_id)
    set_device_cookie(response, request, username=username)
    return response


@router.post("/logout")
def log_out(request: Request, auth: LoggedIn, form: Form) -> Response:
    postroom_of(request).identity.log_out(auth.session_id)
    response = redirect(request, "/login")
    clear_session_cookie(response, request)
    return response
