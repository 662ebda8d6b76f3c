"""Errors as ``application/problem+json`` (RFC 9457), and the exception handlers behind them."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    InvalidFieldsError,
    InvalidTextError,
    MessageError,
    NoAccountError,
    NotFoundError,
    PostroomError,
    SecretError,
    StateError,
    TemplateError,
)
from postroom.text import printable, undecodable

log = logging.getLogger("postroom.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://postroom.dev/problems/"
RETRY_AFTER_SECONDS = 5
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.\[][^ ]*)?$")


class FieldProblem(BaseModel):
    """One invalid field of a request: where it is and what is wrong with it."""

    field: str = Field(description="Dotted location, e.g. body.port or query.limit")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(examples=[f"{TYPE_BASE}validation"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(ge=400, le=599, examples=[422])
    detail: str = ""
    errors: list[FieldProblem] = Field(default_factory=list)


class ApiProblem(Exception):
    """Raised by the API's own code to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors or []
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str = "",
    *,
    kind: str | None = None,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = Problem(
        type=TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        title=title,
        status=status,
        detail=detail,
        errors=errors or [],
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def field_problems(errors: Any, *, prefix: tuple[str, ...] = ()) -> list[FieldProblem]:
    """Pydantic's error list as field problems, without the offending input (it may be secret)."""
    found = []
    for err in errors:
        loc = [*prefix, *(str(p) for p in err.get("loc", ()))]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        found.append(FieldProblem(field=".".join(loc) or "body", message=message))
    return found


def validation_problem(exc: ValidationError, *, prefix: tuple[str, ...] = ("body",)) -> ApiProblem:
    errors = field_problems(exc.errors(include_url=False, include_input=False), prefix=prefix)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ApiProblem(422, detail, kind="validation", errors=errors)


def _status_of(exc: PostroomError) -> int:
    # Most specific first: NoAccountError is a NotFoundError, but the request (not the
    # URL) names what is missing.
    if isinstance(exc, NoAccountError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConfigurationError | MessageError | TemplateError):
        return 422
    if isinstance(exc, StateError):
        return 409
    if isinstance(exc, CredentialsRejectedError | DeliveryError):
        return 502
    return 500


async def _on_api_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers
    )


async def _on_postroom_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PostroomError)
    status = _status_of(exc)
    if isinstance(exc, SecretError) or status == 500:
        # The server's configuration (a key) is wrong: the client can do nothing about it.
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return problem_response(500, "the server cannot read its stored secrets")
    if isinstance(exc, InvalidTextError):
        found = FieldProblem(field=_in_request(exc.field), message=str(exc))
        return problem_response(status, str(exc), kind="validation", errors=[found])
    if isinstance(exc, InvalidFieldsError):
        return problem_response(status, str(exc), kind="validation", errors=body_problems(exc))
    return problem_response(status, str(exc))


def _in_request(field: str) -> str:
    """A field the service named (``subject``) where the request has it (``body.subject``)."""
    if not field or field == "body":
        return "body"
    if field.startswith(("body.", "body[", "path.", "query.")) or not _FIELD_PATH.match(field):
        return field  # located by the API already, or a description ("a query parameter's name")
    return f"body.{field}"


async def _on_unicode_error(_: Request, exc: Exception) -> JSONResponse:
    # Checked text cannot get here; this keeps anything unforeseen (a template that
    # writes a lone surrogate, say) a clear answer instead of a 500.
    log.warning("text that is not valid Unicode got past the checks: %s", type(exc).__name__)
    return problem_response(422, f"text is not valid Unicode: {printable(str(exc))}")


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    malformed = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        # Not JSON at all is a bad request (400), not content that fails to validate.
        detail = _malformed_detail(await request.body(), malformed)
        found = FieldProblem(field="body", message=detail)
        return problem_response(400, detail, kind="malformed-json", errors=[found])
    errors = field_problems(exc.errors())
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(422, detail, kind="validation", errors=errors)


def _malformed_detail(body: bytes, error: dict[str, Any]) -> str:
    """Why the JSON parser stopped and where: line, column and character."""
    why = str((error.get("ctx") or {}).get("error") or "not valid JSON")
    loc = error.get("loc") or ()
    position = loc[-1] if loc and isinstance(loc[-1], int) else None
    if position is None:
        return f"the body is not valid JSON: {why}"
    # The parser counts characters of the decoded text; the body is UTF-8 (checked).
    before = body.decode("utf-8", "replace")[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    return (
        f"the body is not valid JSON: {why} at line {line}, column {column} "
        f"(character {position + 1})"
    )


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError) and isinstance(cause.object, bytes):
        # FastAPI says only "There was an error parsing the body": say where and why.
        bad = undecodable(cause.object, cause.start, source="body")
        found = FieldProblem(field="body", message=str(bad))
        return problem_response(400, str(bad), kind="invalid-text", errors=[found])
    return problem_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


def database_unavailable() -> JSONResponse:
    return problem_response(
        503,
        "the database is unavailable; nothing was done, try again",
        kind="database-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _on_database_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, IntegrityError):
        return problem_response(409, "the change conflicts with another one; read and try again")
    if isinstance(exc, DataError):
        return problem_response(422, "a value does not fit its database column")
    # Only the class: the DBAPI message may quote the statement's parameters.
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    log.warning("database unavailable: %s", type(cause).__name__)
    return database_unavailable()


def install_handlers(app: FastAPI) -> None:
    """Answer every error the API knows with a problem document."""
    app.add_exception_handler(ApiProblem, _on_api_problem)
    app.add_exception_handler(PostroomError, _on_postroom_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(UnicodeError, _on_unicode_error)
    # Handlers are found by the exception's class hierarchy: DBAPIError covers
    # OperationalError and InterfaceError; a pool timeout is the database being busy.
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeout, _on_database_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these problem statuses."""
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": HTTPStatus(s).phrase}
        for s in statuses
    }


def body_problems(exc: InvalidFieldsError) -> list[FieldProblem]:
    """The issues of ``exc`` as problems of the request body (``body.to.1``)."""
    return [FieldProblem(field=f"body.{i.field}", message=i.message) for i in exc.issues]


@contextlib.contextmanager
def referenced(field: str | Callable[[], str] | None = None) -> Iterator[None]:
    """A record the request body names (not the URL) is missing: 422, not 404.

    The error names the field that named the record: the one the error carries, or
    ``field`` (a function when it takes a look to know which field it was).
    """
    try:
        yield
    except NotFoundError as exc:
        if isinstance(exc, InvalidFieldsError):
            errors = body_problems(exc)
        elif field is not None:
            name = field if isinstance(field, str) else field()
            errors = [FieldProblem(field=f"body.{name}", message=str(exc))]
        else:
            errors = []
        raise ApiProblem(422, str(exc), kind="unknown-reference", errors=errors) from None
