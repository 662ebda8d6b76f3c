"""Studio sessions: the login cookie, the logged-in user, and CSRF checks on forms."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from postroom.app import Postroom
from postroom.identity.sessions import SESSION_LIFETIME, Session
from postroom.security.devices import DEVICE_LIFETIME
from postroom.security.door import client_address, door_of, shown
from postroom.web import forms

log = logging.getLogger("postroom.web")

SESSION_COOKIE = "postroom_session"
# Before login there is no session to hold a CSRF token: the login form uses a
# double-submit cookie instead, so another site cannot log a browser into its account.
LOGIN_COOKIE = "postroom_login_csrf"
CSRF_FIELD = "csrf_token"
# A browser that logged in as a user before (security.devices): its logins are not held
# back by strangers' failures for that user.
DEVICE_COOKIE = "postroom_device"


class LoginRequiredError(Exception):
    """The request has no valid session; the studio answers with a redirect to /login."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


@dataclass(frozen=True, slots=True)
class Auth:
    """The logged-in user of a request, with the session's id and CSRF token."""

    session_id: str
    username: str
    csrf_token: str


def postroom_of(request: Request) -> Postroom:
    pr: Postroom = request.app.state.postroom
    return pr


def _login_target(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return "/login" if path in ("/", "") else f"/login?next={quote(path, safe='')}"


def current_auth(request: Request) -> Auth:
    """The request's session, or :class:`LoginRequiredError` (a redirect to the login)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    session: Session | None = None
    if session_id:
        session = postroom_of(request).identity.session(session_id)
    if session_id is None or session is None:
        raise LoginRequiredError(_login_target(request))
    return Auth(session_id, session.username, session.csrf_token)


def _same(given: Any, expected: str) -> bool:
    return isinstance(given, str) and bool(given) and secrets.compare_digest(given, expected)


def _authenticated(request: Request) -> Auth:
    # Sync: the session lookup reads the database, so FastAPI runs it in a worker thread.
    return current_auth(request)


async def checked_form(
    request: Request, auth: Annotated[Auth, Depends(_authenticated)]
) -> FormData:
    """The posted form, after checking its CSRF field against the session's token.

    Then its text: a field that is not valid Unicode is refused (422) naming the field.
    """
    form = await read_form(request)
    if not _same(form.get(CSRF_FIELD), auth.csrf_token):
        raise HTTPException(status_code=403, detail="the form's security token is missing or wrong")
    forms.check_text(form)
    return form


async def read_form(request: Request) -> FormData:
    """The posted form, fields up to the service's ``max_request_bytes`` (web.forms.read)."""
    return await forms.read(request, limit=postroom_of(request).settings.max_request_bytes)


LoggedIn = Annotated[Auth, Depends(_authenticated)]
Form = Annotated[FormData, Depends(checked_form)]


def check_login_csrf(request: Request, form: FormData) -> None:
    if not _same(form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE, "") or ""):
        raise HTTPException(status_code=403, detail="the login form's security token is wrong")


async def log_in_throttled(
    request: Request, *, username: str, password: str
) -> tuple[str, Session] | None:
    """A new session when the password is right, else None; throttled (429 when refused).

    Each attempt is counted before the password is checked (a success takes it back),
    so parallel guesses cannot all slip under the limit; the delay also comes first,
    so an attacker cannot learn a result sooner by hanging up. A browser with a
    known-device cookie for ``username`` is counted per device, not per user.
    """
    door = door_of(postroom_of(request))
    address = client_address(request.scope)
    device = door.devices.device_of(request.cookies.get(DEVICE_COOKIE), username=username)
    verdict = door.logins.admit(subject=username, address=address, reserve=True, device=device)
    if verdict.refused:
        door.throttled("studio", "refused")
        log.warning(
            "Studio login refused for %ss: too many failures (user %s, address %s)",
            verdict.retry_after_header,
            shown(username),
            address,
        )
        raise HTTPException(
            status_code=429,
            detail="Too many failed logins from this address or for this user. Try again in "
            f"{verdict.retry_after_header} seconds (after {_after(verdict.retry_after_header)}). "
            "A browser that has logged in as this user before is not held back by failures "
            "from other addresses.",
            headers={"Retry-After": verdict.retry_after_header},
        )
    if verdict.delay:
        door.throttled("studio", "delayed")
        await anyio.sleep(verdict.delay)
    try:
        # Password hashing is slow on purpose: keep it off the event loop.
        opened = await run_in_threadpool(
            postroom_of(request).identity.log_in, username=username, password=password
        )
    except Exception:
        # The database failed, not the password: the attempt is no guess.
        door.logins.release(subject=username, address=address, device=device)
        raise
    if opened is None:
        door.failure("studio")
        log.warning(
            "Studio login failed%s (user %s, address %s)",
            _after_delay(verdict.delay),
            shown(username),
            address,
        )
        return None
    door.logins.succeeded(subject=username, address=address, device=device)
    return opened


def _after_delay(delay: float) -> str:
    return f" after a {delay:g} s delay" if delay else ""


def _after(seconds: str) -> str:
    return f"{datetime.now(UTC) + timedelta(seconds=int(seconds)):%H:%M:%S} UTC"


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/login",
    )


def set_session_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")


def set_device_cookie(response: Response, request: Request, *, username: str) -> None:
    """Mark the browser a known device of ``username`` (its device id kept, re-signed)."""
    devices = door_of(postroom_of(request)).devices
    device = devices.device_of(request.cookies.get(DEVICE_COOKIE), username=username)
    response.set_cookie(
        DEVICE_COOKIE,
        devices.issue(username, device=device),
        max_age=DEVICE_LIFETIME,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request)
    )


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (another site) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
