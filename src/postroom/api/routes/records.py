"""The records' routes (list, get, create, replace, delete), built from their descriptions.

Every record type of :mod:`postroom.catalog` gets the same five routes; its description
gives the paths, the OpenAPI tag, the typed request and response models, which secrets
are write-only and what refuses a delete (409 ``in-use``). Routes particular to one type
(an account's connectivity test...) live elsewhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from postroom import catalog
from postroom.api.auth import admin
from postroom.api.problems import ApiProblem, problem_responses
from postroom.api.writes import check_name, save, stored, validate
from postroom.app import Postroom
from postroom.catalog import RecordKind

_WRITE = problem_responses(401, 403, 409, 422)
_READ = problem_responses(401, 403, 404)
_DELETE = problem_responses(401, 403, 404, 409, 422)
# The function names the routes had when written one by one: FastAPI derives the
# operationId from them, and clients generated from the document keep their method names.
_NAMES = {
    "accounts": ("account", "accounts"),
    "auth-profiles": ("profile", "profiles"),
    "keystores": ("keystore", "keystores"),
    "operators": ("operator", "operators"),
    "correspondence": ("correspondence", "correspondence"),
    "case-types": ("case_type", "case_types"),
    "webhooks": ("webhook", "webhooks"),
}
_LIST_SUMMARIES = {
    "auth-profiles": "List authentication profiles",
    "keystores": "List keystores with their certificates",
}
_P = inspect.Parameter


def router(postroom: Postroom, kinds: Iterable[RecordKind] | None = None) -> APIRouter:
    """The routes of ``kinds`` (default: the records without secrets)."""
    api = APIRouter(dependencies=[admin], responses=problem_responses(401, 403))
    chosen = kinds or (catalog.OPERATORS, catalog.CORRESPONDENCE, catalog.CASE_TYPES)
    for kind in chosen:
        _routes(api, postroom, kind)
    return api


def _endpoint(func: Callable[..., Any], name: str, *params: _P) -> Callable[..., Any]:
    """``func`` as FastAPI should see it: named ``name``, with typed ``params``."""
    func.__name__ = func.__qualname__ = name
    func.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    return func


def _status(response: Response, change: str) -> None:
    response.status_code = 201 if change == "created" else 200


def _routes(api: APIRouter, postroom: Postroom, kind: RecordKind) -> None:
    one, many = _NAMES[kind.slug]
    base = f"/{kind.slug}"
    item = f"{base}/{{{kind.param}}}"
    key = _P(kind.param, _P.POSITIONAL_OR_KEYWORD, annotation=str)
    body = _P("body", _P.POSITIONAL_OR_KEYWORD, annotation=kind.input)
    response = _P("response", _P.POSITIONAL_OR_KEYWORD, annotation=Response)
    secrets = ", ".join(kind.secrets)

    def shown(name: str) -> BaseModel:
        return kind.show(catalog.record(postroom, kind, name))

    def put(data: BaseModel, answer: Response, *, create: bool) -> BaseModel:
        name = kind.key_of(data)
        if kind.secrets:
            fields = data.model_dump(exclude_unset=True, by_alias=True)
            old = stored(lambda n: catalog.record(postroom, kind, n), name)
            data = validate(kind.model, kind.merge(fields, old))
        change, warnings = save(postroom, kind.section, data, create=create)
        _status(answer, change)
        view = shown(name)
        if warnings and "warnings" in kind.view.model_fields:
            # Warnings of the write itself (apply's), besides the record's own.
            known = getattr(view, "warnings")  # noqa: B009 - the views are typed as BaseModel
            view = view.model_copy(update={"warnings": [*known, *warnings]})
        return view

    def list_all() -> list[BaseModel]:
        return [kind.show(r) for r in catalog.records(postroom, kind)]

    def create(body: BaseModel, response: Response) -> BaseModel:
        return put(body, response, create=True)

    def get(**path: str) -> BaseModel:
        return shown(path[kind.param])

    def replace(body: BaseModel, response: Response, **path: str) -> BaseModel:
        check_name(path[kind.param], kind.key_of(body), field=kind.key)
        return put(body, response, create=False)

    def remove(**path: str) -> Response:
        try:
            catalog.delete(postroom, kind, path[kind.param])
        except catalog.InUseError as exc:
            raise ApiProblem(409, str(exc), kind="in-use") from None
        return Response(status_code=204)

    tags: list[str | Enum] = [kind.tag]
    api.add_api_route(
        base,
        _endpoint(list_all, f"list_{many}"),
        methods=["GET"],
        tags=tags,
        summary=_LIST_SUMMARIES.get(kind.slug, f"List {kind.plural.lower()}"),
        response_model=list[kind.view],  # type: ignore[name-defined]
    )
    api.add_api_route(
        base,
        _endpoint(create, f"create_{one}", body, response),
        methods=["POST"],
        tags=tags,
        summary=f"Create {kind.a}",
        description=f"409 (`exists`) when {kind.a} with this {kind.key} exists: "
        "PUT replaces it." + (f" Write-only: {secrets}." if secrets else ""),
        status_code=201,
        responses=_WRITE,
        response_model=kind.view,
    )
    api.add_api_route(
        item,
        _endpoint(get, f"get_{one}", key),
        methods=["GET"],
        tags=tags,
        summary=f"Get {kind.a}",
        responses=_READ,
        response_model=kind.view,
    )
    api.add_api_route(
        item,
        _endpoint(replace, f"replace_{one}", key, body, response),
        methods=["PUT"],
        tags=tags,
        summary=f"Create or replace {kind.a}",
        description=f"The body's {kind.key} must be the URL's. 201 when created, 200 when "
        "replaced."
        + (f" Omitted write-only fields ({secrets}) keep their stored values." if secrets else ""),
        responses=_WRITE,
        response_model=kind.view,
    )
    api.add_api_route(
        item,
        _endpoint(remove, f"delete_{one}", key),
        methods=["DELETE"],
        tags=tags,
        summary=f"Delete {kind.a}",
        description=f"409 (`in-use`) while something still uses the {kind.name}; the "
        "problem's detail names it.",
        status_code=204,
        responses=_DELETE,
        response_class=Response,
    )
