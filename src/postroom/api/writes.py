"""Writing records through the API by the path ``postroom apply`` takes.

Bodies are validated by the records' own models (secrets kept as
:mod:`postroom.catalog.secrets` says) and written by ``write_records``, so
the API and a YAML file accept and refuse the same things. Two differences are
deliberate: ``${ENV}`` is not expanded and ``*_file`` fields are not read, since both
would let a caller read the server's environment and files.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from postroom.api.problems import ApiProblem, FieldProblem, validation_problem
from postroom.app import Postroom
from postroom.config.apply import write_records
from postroom.errors import ExistsError, NotFoundError, PostroomError
from postroom.records import Change

R = TypeVar("R", bound=BaseModel)
# Who the request writes as, named in the correspondence versions a write keeps. Set by
# the authentication middleware for the whole request: the record routes are built from
# descriptions and have no token parameter of their own.
_writer: ContextVar[str | None] = ContextVar("postroom_api_writer", default=None)
MAX_WRITER = 255  # correspondence_versions.saved_by


def acting_as(token_name: str) -> None:
    """Name the token the current request writes as (``api:<token name>``)."""
    _writer.set(f"api:{token_name}"[:MAX_WRITER])


def writer() -> str:
    """Who the current request writes as: ``api:<token name>``, or ``api`` outside one."""
    return _writer.get() or "api"


def check_name(path_name: str, body_name: str, *, field: str = "name") -> None:
    if path_name != body_name:
        raise ApiProblem(
            422,
            f"the body's {field} {body_name!r} is not the URL's {path_name!r}",
            kind="validation",
            errors=[FieldProblem(field=f"body.{field}", message="must match the URL")],
        )


def validate(model: type[R], data: dict[str, Any]) -> R:
    """``model`` from ``data``; its validation errors as a 422 problem with field errors."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def save(
    postroom: Postroom, section: str, record: BaseModel, *, create: bool = False
) -> tuple[Change, list[str]]:
    """Upsert one record as ``apply`` does (``create``: only a new one); change, warnings."""
    try:
        report = write_records(postroom, {section: [record]}, create=create, by=writer())
    except ExistsError as exc:
        raise ApiProblem(409, f"{exc}; PUT replaces it", kind="exists") from None
    except PostroomError:
        raise
    except ValueError as exc:
        # A record property that validates lazily (a keystore's base64 content when its
        # kind is given) fails here rather than in the model: still the client's error.
        raise ApiProblem(422, str(exc), kind="validation") from None
    return report.changes[0][2], report.warnings


def stored(load: Any, name: str) -> Any | None:
    """The stored record named ``name``, or None."""
    try:
        return load(name)
    except NotFoundError:
        return None
