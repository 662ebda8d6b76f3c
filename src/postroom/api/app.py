"""The API's ASGI application, built on an opened :class:`~postroom.app.Postroom`."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.responses import Response
from starlette.types import Scope

from postroom.api import docs
from postroom.api.auth import TokenAuthentication
from postroom.api.problems import install_handlers, problem_response
from postroom.api.routes import (
    cases,
    emails,
    inbound,
    ops,
    records,
    reviews,
    secured,
    suppressions,
    versions,
    webhooks,
)
from postroom.api.text import checked_json_body, checked_parameters
from postroom.app import Postroom
from postroom.security.body_limit import CLOSE, BodyLimit, too_large_detail
from postroom.security.door import door_of

DESCRIPTION = """\
Postroom's REST API. Every route but `/`, `/healthz`, `/docs` and `/openapi.json` needs
`Authorization: Bearer <token>` (create one with `postroom tokens create NAME --scope send`;
use **Authorize** on this page to try the routes). A `send` token creates cases and emails
and reads back what it created; an `admin` token may do everything.

Errors are `application/problem+json` (RFC 9457): a body that is not JSON gets 400
(`malformed-json`, with the position); JSON that does not validate gets 422 with an
`errors` list naming each field (`body.to.1`). `POST /cases` and `POST /emails` accept
an `Idempotency-Key` header: a retry with the same key replays the first answer.
Ad-hoc subjects and bodies are sent as written; `"template": true` renders them.
A case type's class is `class_name` everywhere (`case_type` on `POST /cases` is a
deprecated alias, answered with a `Deprecation: true` header).
A request body over the service's `max_request_bytes` gets 413 before it is read;
repeated failed tokens from one address get a growing delay, then 429 with `Retry-After`.
"""


def _too_large(_: Scope, limit: int) -> Response:
    return problem_response(413, too_large_detail(limit), headers=dict(CLOSE))


def create_api(postroom: Postroom) -> FastAPI:
    """The REST API on ``postroom``; the server mounts it at ``/api/v1``."""
    api = FastAPI(
        title="Postroom API",
        version="1",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(checked_parameters), Depends(checked_json_body)],
    )
    install_handlers(api)
    api.add_middleware(TokenAuthentication, postroom=postroom)
    # Added last, so outermost: a body too large is refused before anything else runs.
    door = door_of(postroom)
    api.add_middleware(
        BodyLimit,
        limit=postroom.settings.max_request_bytes,
        refuse=_too_large,
        on_refused=lambda: door.too_large("api"),
    )
    api.include_router(docs.router())
    api.include_router(ops.router(postroom))
    api.include_router(secured.router(postroom))
    api.include_router(records.router(postroom))
    api.include_router(cases.router(postroom))
    api.include_router(emails.router(postroom))
    api.include_router(inbound.router(postroom))
    api.include_router(suppressions.router(postroom))
    api.include_router(webhooks.router(postroom))
    api.include_router(versions.router(postroom))
    api.include_router(reviews.router(postroom))
    api.state.postroom = postroom
    return api
