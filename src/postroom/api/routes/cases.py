"""Cases: create (idempotently), read, change status, attach files."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from sqlalchemy import Connection

from postroom.api.auth import SendToken, admin
from postroom.api.idempotency import (
    IdempotencyKey,
    Stored,
    once,
    record_key,
    request_hash,
)
from postroom.api.ownership import check_case, record_owner
from postroom.api.problems import ApiProblem, problem_responses, referenced
from postroom.api.schemas.work import CaseCreate, CaseView, StatusChange, deprecated
from postroom.app import Postroom
from postroom.cases.adhoc import at_field
from postroom.cases.models import Case
from postroom.cases.service import MAX_ATTACHMENT_BYTES

_CHANGE = problem_responses(401, 403, 404, 409, 422)


def _location(request: Request, case_id: str) -> str:
    return str(request.url_for("get_case", case_id=case_id))


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(tags=["cases"], responses=problem_responses(401, 403))
    engine = postroom.engine

    @api.post("/cases", status_code=201, responses=problem_responses(401, 403, 422))
    def create_case(
        body: CaseCreate,
        request: Request,
        response: Response,
        token: SendToken,
        key: IdempotencyKey = None,
    ) -> CaseView:
        """Create a case of the case type ``class_name`` and queue its ``on: created`` emails,
        in one transaction. ``case_type`` is the deprecated name of ``class_name``."""
        digest = request_hash("POST /cases", body.model_dump(mode="json"))

        def record(conn: Connection, case_id: str) -> None:
            record_owner(conn, token_id=token.id, kind="case", ident=case_id)
            stored = Stored(201, {"case_id": case_id})
            record_key(conn, token_id=token.id, key=key, digest=digest, stored=stored)

        def create() -> Case:
            # What the service refuses is in the data (a party's address, say), unless
            # it is a record the body names: the case type, or the creating operator.
            with at_field("data"), referenced(missing):
                return postroom.cases.create(
                    body.class_name, data=body.data, operator=body.operator, record=record
                )

        def missing() -> str:
            if body.operator is None:
                return "class_name"
            with engine.connect() as conn:
                known = postroom.operator_store.find(conn, body.operator) is not None
            return "class_name" if known else "operator"

        result = once(engine, token_id=token.id, key=key, digest=digest, create=create)
        if isinstance(result, Stored):
            case = postroom.cases.get(str(result.body["case_id"]))
            response.status_code = result.status_code
            response.headers["Idempotent-Replayed"] = "true"
        else:
            case = result
        response.headers["Location"] = _location(request, case.id)
        deprecated(response, body.deprecated_names)
        return CaseView.of(case, warnings=case.failed_emails())

    @api.get("/cases", dependencies=[admin], summary="The newest cases (admin)")
    def recent_cases(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[CaseView]:
        return [CaseView.of(c) for c in postroom.cases.recent(limit=limit)]

    @api.get("/cases/{case_id}", responses=problem_responses(401, 403, 404))
    def get_case(case_id: str, token: SendToken) -> CaseView:
        check_case(engine, token, case_id)
        return CaseView.of(postroom.cases.get(case_id))

    @api.post("/cases/{case_id}/status", responses=_CHANGE)
    def set_status(case_id: str, body: StatusChange, token: SendToken) -> CaseView:
        """Move the case to a status; entering it fires that status's emails."""
        check_case(engine, token, case_id)
        # 404 for the case; a missing operator is a 422
        before = len(postroom.cases.get(case_id).history)
        with at_field("status"), referenced("operator"):
            case = postroom.cases.set_status(case_id, body.status, operator=body.operator)
        return CaseView.of(case, warnings=case.failed_emails(since=before))

    @api.post("/cases/{case_id}/attachments", status_code=201, responses=_CHANGE)
    def attach(
        case_id: str,
        file: Annotated[UploadFile, File(description="The file (25 MB at most)")],
        token: SendToken,
        name: Annotated[str | None, Form(max_length=255)] = None,
    ) -> CaseView:
        check_case(engine, token, case_id)
        postroom.cases.get(case_id)  # 404 before reading a large upload
        content = file.file.read(MAX_ATTACHMENT_BYTES + 1)
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise ApiProblem(413, "the attachment is larger than 25 MB", kind="too-large")
        with at_field("name"):
            case = postroom.cases.attach(
                case_id,
                name=name or file.filename or "",
                content=content,
                content_type=file.content_type,
            )
        return CaseView.of(case)

    @api.get(
        "/cases/{case_id}/attachments/{name}",
        response_class=Response,
        responses={
            **problem_responses(401, 403, 404),
            200: {"content": {"application/octet-stream": {}}},
        },
    )
    def attachment(case_id: str, name: str, token: SendToken) -> Response:
        check_case(engine, token, case_id)
        content_type, content = postroom.cases.attachment(case_id, name)
        quoted = quote(name, safe="")
        return Response(
            content,
            media_type=content_type,
            headers={
                # Uploaded by a client: never rendered in the browser of whoever opens it.
                "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    return api
