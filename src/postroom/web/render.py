"""Rendering studio pages: the Jinja2 environment, shared page context and notices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from postroom.web.session import CSRF_FIELD, Auth

TEMPLATES = Path(__file__).parent / "templates"
Level = Literal["success", "warning", "error"]
LEVELS = frozenset(get_args(Level))
NOTICE_COOKIE = "postroom_notice"
# Sent by studio.js when it refreshes a page's live parts in the background.
LIVE_HEADER = "X-Postroom-Live"

NAV = (
    ("/", "Dashboard"),
    ("/accounts", "Email accounts"),
    ("/auth-profiles", "Auth profiles"),
    ("/keystores", "Keystores"),
    ("/operators", "Operators"),
    ("/case-types", "Case types"),
    ("/correspondence", "Correspondence"),
    ("/cases", "Cases"),
    ("/outbox", "Outbox"),
    ("/reviews", "Reviews"),
    ("/inbound", "Inbound"),
    ("/suppressions", "Suppressions"),
    ("/webhooks", "Webhooks"),
    ("/agents", "Agents"),
    ("/tokens", "API tokens"),
    ("/inbox", "Dev inbox"),
)


def _when(value: datetime | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is escaped unless a template marks it safe
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["urlpart"] = lambda v: quote(str(v), safe="")
    return env


templates = Jinja2Templates(env=_environment())


def page(
    request: Request,
    template: str,
    auth: Auth | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A full page: the template with the user, CSRF token, navigation and any notice."""
    # A background refresh leaves the one-time notice to the page the user opens next.
    live = request.headers.get(LIVE_HEADER) == "1"
    notice = None if live else request.cookies.get(NOTICE_COOKIE)
    level, _, text = unquote(notice).partition(":") if notice else ("", "", "")
    if level not in LEVELS:  # a cookie from before levels existed
        level, text = "success", unquote(notice or "")
    values = {
        "auth": auth,
        "csrf_field": CSRF_FIELD,
        "csrf_token": auth.csrf_token if auth else "",
        "nav": NAV,
        "path": request.url.path,
        "notice": text or None,
        "notice_level": level,
        "title": "",
        **context,
    }
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    if notice:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    return response


def redirect(
    request: Request, url: str, notice: str | None = None, *, level: Level = "success"
) -> RedirectResponse:
    """303 to ``url`` (after a form post), carrying a one-time notice for the next page.

    ``level`` styles it: a warning or an error is never shown as a success.
    """
    response = RedirectResponse(url, status_code=303)
    if notice:
        response.set_cookie(
            NOTICE_COOKIE,
            quote(f"{level}:{notice[:500]}"),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
