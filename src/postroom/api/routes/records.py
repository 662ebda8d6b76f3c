"""Operators, correspondence and case types: records without secrets."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from postroom.api.auth import admin
from postroom.api.problems import ApiProblem, problem_responses
from postroom.api.writes import check_name, save
from postroom.app import Postroom
from postroom.cases.models import CaseType, RecipientKind
from postroom.correspondence import Correspondence
from postroom.db import tables
from postroom.operators import Operator

_WRITE = problem_responses(401, 403, 409, 422)
_READ = problem_responses(401, 403, 404)


def _answer(response: Response, change: str) -> None:
    response.status_code = 201 if change == "created" else 200


def _used_by(what: str, user: str) -> ApiProblem:
    return ApiProblem(409, f"{what} is still used by {user}", kind="in-use")


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(dependencies=[admin], responses=problem_responses(401, 403))
    _operators(api, postroom)
    _correspondence(api, postroom)
    _case_types(api, postroom)
    return api


def _all_case_types(postroom: Postroom) -> list[CaseType]:
    with postroom.engine.connect() as conn:
        return postroom.case_type_store.list(conn)


def _operators(api: APIRouter, postroom: Postroom) -> None:
    def operator(operator_id: str) -> Operator:
        with postroom.engine.connect() as conn:
            return postroom.operator_store.get(conn, operator_id)

    # --- operators ----------------------------------------------------------------

    @api.get("/operators", tags=["operators"], summary="List operators")
    def list_operators() -> list[Operator]:
        with postroom.engine.connect() as conn:
            return postroom.operator_store.list(conn)

    @api.post("/operators", tags=["operators"], status_code=201, responses=_WRITE)
    def create_operator(body: Operator) -> Operator:
        save(postroom, "operators", body, create=True)
        return operator(body.id)

    @api.get("/operators/{operator_id}", tags=["operators"], responses=_READ)
    def get_operator(operator_id: str) -> Operator:
        return operator(operator_id)

    @api.put("/operators/{operator_id}", tags=["operators"], responses=_WRITE)
    def replace_operator(operator_id: str, body: Operator, response: Response) -> Operator:
        check_name(operator_id, body.id, field="id")
        _answer(response, save(postroom, "operators", body)[0])
        return operator(body.id)

    @api.delete("/operators/{operator_id}", tags=["operators"], status_code=204, responses=_WRITE)
    def delete_operator(operator_id: str) -> Response:
        for ct in _all_case_types(postroom):
            sources = {f"operator:{operator_id}"}
            named = any(
                r.kind is RecipientKind.OPERATOR and r.value == operator_id
                for s in ct.steps
                for r in (*s.to, *s.cc, *s.bcc)
            )
            if named or sources & set(ct.parties.values()):
                raise _used_by(f"operator {operator_id}", f"case type {ct.class_name}")
        with postroom.engine.begin() as conn:
            postroom.operator_store.delete(conn, operator_id)
        return Response(status_code=204)


def _correspondence(api: APIRouter, postroom: Postroom) -> None:
    def correspondence(name: str) -> Correspondence:
        with postroom.engine.connect() as conn:
            return postroom.correspondence_store.get(conn, name)

    @api.get("/correspondence", tags=["correspondence"], summary="List correspondence")
    def list_correspondence() -> list[Correspondence]:
        with postroom.engine.connect() as conn:
            return sorted(postroom.correspondence_store.all(conn).values(), key=lambda c: c.name)

    @api.post("/correspondence", tags=["correspondence"], status_code=201, responses=_WRITE)
    def create_correspondence(body: Correspondence) -> Correspondence:
        save(postroom, "correspondence", body, create=True)
        return correspondence(body.name)

    @api.get("/correspondence/{name}", tags=["correspondence"], responses=_READ)
    def get_correspondence(name: str) -> Correspondence:
        return correspondence(name)

    @api.put("/correspondence/{name}", tags=["correspondence"], responses=_WRITE)
    def replace_correspondence(
        name: str, body: Correspondence, response: Response
    ) -> Correspondence:
        check_name(name, body.name)
        _answer(response, save(postroom, "correspondence", body)[0])
        return correspondence(body.name)

    @api.delete(
        "/correspondence/{name}", tags=["correspondence"], status_code=204, responses=_WRITE
    )
    def delete_correspondence(name: str) -> Response:
        for ct in _all_case_types(postroom):
            if any(s.correspondence == name for s in ct.steps):
                raise _used_by(f"correspondence {name!r}", f"case type {ct.class_name}")
        with postroom.engine.begin() as conn:
            postroom.correspondence_store.delete(conn, name)
        return Response(status_code=204)


def _case_types(api: APIRouter, postroom: Postroom) -> None:
    def case_type(class_name: str) -> CaseType:
        with postroom.engine.connect() as conn:
            return postroom.case_type_store.get(conn, class_name)

    @api.get("/case-types", tags=["case types"], summary="List case types")
    def list_case_types() -> list[CaseType]:
        return _all_case_types(postroom)

    @api.post("/case-types", tags=["case types"], status_code=201, responses=_WRITE)
    def create_case_type(body: CaseType) -> CaseType:
        save(postroom, "case_types", body, create=True)
        return case_type(body.class_name)

    @api.get("/case-types/{class_name}", tags=["case types"], responses=_READ)
    def get_case_type(class_name: str) -> CaseType:
        return case_type(class_name)

    @api.put("/case-types/{class_name}", tags=["case types"], responses=_WRITE)
    def replace_case_type(class_name: str, body: CaseType, response: Response) -> CaseType:
        check_name(class_name, body.class_name, field="class")
        _answer(response, save(postroom, "case_types", body)[0])
        return case_type(body.class_name)

    @api.delete("/case-types/{class_name}", tags=["case types"], status_code=204, responses=_WRITE)
    def delete_case_type(class_name: str) -> Response:
        c = tables.cases
        with postroom.engine.begin() as conn:
            postroom.case_type_store.get(conn, class_name)
            row = conn.execute(select(c.c.id).where(c.c.case_type == class_name).limit(1)).first()
            if row is not None:
                raise _used_by(f"case type {class_name}", f"case {row.id}")
            postroom.case_type_store.delete(conn, class_name)
        return Response(status_code=204)
