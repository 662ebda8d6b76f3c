"""The Admin Studio application: routes, static files, and how errors are shown."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import Scope

from postroom.app import Postroom
from postroom.errors import NotFoundError
from postroom.security.body_limit import BodyLimit, ContentTooLarge
from postroom.security.door import door_of
from postroom.web.pages import (
    accounts,
    agents,
    auth,
    cases,
    correspondence,
    dashboard,
    devinbox,
    images,
    inbound,
    keystores,
    outbox,
    profiles,
    records,
    reviews,
    suppressions,
    tokens,
    translations,
    versions,
    webhooks,
)
from postroom.web.render import page
from postroom.web.session import Auth, LoginRequiredError, current_auth

STATIC = Path(__file__).parent / "static"
# Studio pages load only their own scripts and styles; email bodies are framed from
# same-origin URLs that carry their own, stricter policy (see web.mail.BODY_POLICY).
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)


async def _security_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.headers.get("content-type", "").startswith("text/html"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequiredError)
    return RedirectResponse(exc.target, status_code=303)


def _signed_in(request: Request) -> Auth | None:
    try:
        return current_auth(request)
    except LoginRequiredError:
        return None


def _not_found(request: Request, exc: Exception) -> Response:
    # Raised by pages behind the login: the user keeps the navigation to go on from there.
    auth = _signed_in(request)
    return page(request, "error.html", auth, status_code=404, title="Not found", message=str(exc))


TITLES = {403: "Forbidden", 413: "Too large", 422: "Not saved", 429: "Too many attempts"}


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = page(
        request,
        "error.html",
        None,
        status_code=exc.status_code,
        title=TITLES.get(exc.status_code, "Error"),
        message=str(exc.detail),
        # 422 is a form's field refused before its page could run (web.forms.check_text).
        form_error=exc.status_code == 422,
    )
    # Retry-After of a 429, Connection: close of a 413.
    response.headers.update(exc.headers or {})
    return response


def _invalid_request(request: Request, exc: Exception) -> Response:
    """A path, query or form value of the wrong type, as a page rather than framework JSON.

    A path part that cannot be an id (``/outbox/abc``) names nothing: it is a 404. A query
    or form value the page cannot take is a 422 that names the value.
    """
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    auth = _signed_in(request)
    if any(e.get("loc", ("",))[0] == "path" for e in errors):
        message = f"There is nothing at {request.url.path}."
        return page(
            request, "error.html", auth, status_code=404, title="Not found", message=message
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'value'}: "
        f"{str(e.get('msg', 'invalid')).removeprefix('Value error, ')}"
        for e in errors
    )
    # A page asked for with a value it cannot take saved nothing, and was never saving.
    title = "Not saved" if request.method == "POST" else "Not shown"
    return page(request, "error.html", auth, status_code=422, title=title, message=problems)


def _too_large(scope: Scope, limit: int) -> Response:
    return _http_error(Request(scope), ContentTooLarge(limit))


def create_studio(postroom: Postroom, *, inbox_dir: Path | None = None) -> FastAPI:
    """The Admin Studio as an ASGI app serving ``/`` (mounted by the Postroom service)."""
    studio = FastAPI(
        title="Postroom Admin Studio",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    studio.state.postroom = postroom
    studio.state.inbox_dir = inbox_dir
    door = door_of(postroom)
    # Inside the security headers, so a 413 page carries them too; that middleware
    # never reads the body, so nothing is buffered before the limit is checked.
    studio.add_middleware(
        BodyLimit,
        limit=postroom.settings.max_request_bytes,
        refuse=_too_large,
        on_refused=lambda: door.too_large("studio"),
    )
    studio.add_middleware(BaseHTTPMiddleware, dispatch=_security_headers)
    studio.add_exception_handler(LoginRequiredError, _login_required)
    studio.add_exception_handler(NotFoundError, _not_found)
    studio.add_exception_handler(HTTPException, _http_error)
    studio.add_exception_handler(RequestValidationError, _invalid_request)
    studio.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (
        auth,
        dashboard,
        accounts,
        profiles,
        keystores,
        records,
        correspondence,
        translations,
        images,
        versions,
        reviews,
        cases,
        outbox,
        inbound,
        suppressions,
        webhooks,
        agents,
        tokens,
        devinbox,
    ):
        studio.include_router(module.router)

    @studio.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=308)

    return studio
