"""Writing records through the API by the path ``postroom apply`` takes.

Bodies are validated by the records' own models and written by ``write_records``, so
the API and a YAML file accept and refuse the same things. Two differences are
deliberate: ``${ENV}`` is not expanded and ``*_file`` fields are not read, since both
would let a caller read the server's environment and files.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import Connection

from postroom.accounts import EmailAccount, Protocol
from postroom.api.problems import ApiProblem, FieldProblem, validation_problem
from postroom.app import Postroom
from postroom.config.apply import write_records
from postroom.errors import ExistsError, NotFoundError, PostroomError
from postroom.records import Change

R = TypeVar("R", bound=BaseModel)


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
        report = write_records(postroom, {section: [record]}, create=create)
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


def _keep(data: dict[str, Any], key: str, old: SecretStr | None) -> None:
    # Write-only: omitted means "unchanged", an explicit null removes the secret.
    if key not in data and old is not None:
        data[key] = old


def account_data(body: dict[str, Any], old: EmailAccount | None) -> dict[str, Any]:
    """The account to validate: ``body`` with the stored secrets it omits."""
    data = dict(body)
    if old is None:
        return data
    # Switching to OAuth (XOAUTH2 or Graph) drops the password rather than keeping it.
    oauth = data.get("auth_profile") or data.get("protocol") == Protocol.GRAPH
    if not oauth:
        _keep(data, "password", old.password)
    dkim = data.get("dkim")
    if isinstance(dkim, dict) and old.dkim is not None:
        dkim = dict(dkim)
        _keep(dkim, "private_key", old.dkim.private_key)
        data["dkim"] = dkim
    return data


def secret_data(
    body: dict[str, Any], old: BaseModel | None, keys: tuple[str, ...]
) -> dict[str, Any]:
    """``body`` with the stored values of the secret ``keys`` it omits."""
    data = dict(body)
    if old is not None:
        for key in keys:
            _keep(data, key, getattr(old, key))
    return data


def in_use(conn: Connection, query: Any, what: str) -> None:
    """409 when ``query`` finds a record that still refers to the one being deleted."""
    row = conn.execute(query.limit(1)).first()
    if row is not None:
        raise ApiProblem(409, f"{what} is still used by {row[0]}", kind="in-use")
