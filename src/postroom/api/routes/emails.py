"""Emails: queue an ad-hoc one (idempotently), read, list, retry, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import Connection, Engine

from postroom.api.auth import SendToken, admin
from postroom.api.idempotency import (
    IdempotencyKey,
    Stored,
    once,
    record_key,
    request_hash,
)
from postroom.api.ownership import check_case, check_email, record_owner
from postroom.api.problems import problem_responses, referenced
from postroom.api.schemas.work import (
    BatchEmail,
    EmailBatchCreate,
    EmailCreate,
    EmailPage,
    EmailView,
    QueuedBatch,
    QueuedEmails,
)
from postroom.app import Postroom
from postroom.cases.emails import EmailRequest
from postroom.outbox import OutboxStatus

MAX_PAGE = 200
EmailId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(tags=["emails"], responses=problem_responses(401, 403))

    def queued(ids: list[int]) -> QueuedEmails:
        return QueuedEmails(ids=ids, emails=[EmailView.of(postroom.outbox_entry(i)) for i in ids])

    @api.post("/emails", status_code=201, responses=problem_responses(401, 403, 422))
    def send_email(
        body: EmailCreate,
        request: Request,
        response: Response,
        token: SendToken,
        key: IdempotencyKey = None,
    ) -> QueuedEmails:
        """Queue an email for a case (its class's account) or a class (``class_name``)."""
        if body.case_id is not None:
            check_case(postroom.engine, token, body.case_id)  # a send token's own cases only
        ids = _queue_once(
            postroom.engine,
            token_id=token.id,
            key=key,
            digest=request_hash("POST /emails", body.model_dump(mode="json")),
            response=response,
            queue=lambda record: postroom.send(
                to=body.to,
                cc=body.cc,
                bcc=body.bcc,
                subject=body.subject,
                body=body.body,
                correspondence=body.correspondence,
                class_name=body.class_name,
                case_id=body.case_id,
                priority=body.priority,
                send_after=body.send_after,
                expires_at=body.expires_at,
                record=record,
            ),
        )
        response.headers["Location"] = str(request.url_for("get_email", email_id=ids[0]))
        return queued(ids)

    @api.post("/emails/batch", status_code=201, responses=problem_responses(401, 403, 422))
    def send_batch(
        body: EmailBatchCreate, response: Response, token: SendToken, key: IdempotencyKey = None
    ) -> QueuedBatch:
        """Queue many ad-hoc emails in one transaction: all of them, or none (the error
        names the email). Templates and the account are looked up once."""
        requests = [_request(e) for e in body.emails]
        ids = _queue_once(
            postroom.engine,
            token_id=token.id,
            key=key,
            digest=request_hash("POST /emails/batch", body.model_dump(mode="json")),
            response=response,
            queue=lambda record: postroom.send_many(
                requests, class_name=body.class_name, record=record
            ),
        )
        return QueuedBatch(ids=ids)

    @api.get("/emails", dependencies=[admin], summary="List emails, newest first")
    def list_emails(
        request: Request,
        *,
        status: OutboxStatus | None = None,
        account: Annotated[str | None, Query(max_length=255)] = None,
        case_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> EmailPage:
        # One row more than asked says whether a next page exists.
        rows = postroom.outbox(
            status=status, case_id=case_id, account=account, limit=limit + 1, offset=offset
        )
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(limit=limit, offset=offset + limit))
        return EmailPage(items=[EmailView.of(r) for r in rows[:limit]], next=following)

    @api.get("/emails/{email_id}", responses=problem_responses(401, 403, 404))
    def get_email(email_id: EmailId, token: SendToken) -> EmailView:
        entry = postroom.outbox_entry(email_id)
        check_email(postroom.engine, token, entry)
        return EmailView.of(entry)

    @api.post(
        "/emails/{email_id}/retry",
        dependencies=[admin],
        responses=problem_responses(401, 403, 404, 409),
    )
    def retry_email(email_id: EmailId) -> EmailView:
        """Queue a failed, cancelled or held email again, now."""
        return EmailView.of(postroom.retry(email_id))

    @api.post(
        "/emails/{email_id}/cancel",
        dependencies=[admin],
        responses=problem_responses(401, 403, 404, 409),
    )
    def cancel_email(email_id: EmailId) -> EmailView:
        """Cancel an email that is not sent and not being sent."""
        return EmailView.of(postroom.cancel(email_id))

    return api


Recorder = Callable[[Connection, list[int]], None]


def _queue_once(
    engine: Engine,
    *,
    token_id: str,
    key: str | None,
    digest: str,
    response: Response,
    queue: Callable[[Recorder], object],
) -> list[int]:
    """The ids ``queue`` creates, or on a replayed idempotency key the first answer's.

    ``queue`` hands its recorder the new ids in the creating transaction: who owns them
    and the key's answer are committed with them.
    """
    created: list[int] = []

    def record(conn: Connection, ids: list[int]) -> None:
        for outbox_id in ids:
            record_owner(conn, token_id=token_id, kind="email", ident=str(outbox_id))
        record_key(
            conn, token_id=token_id, key=key, digest=digest, stored=Stored(201, {"ids": ids})
        )
        created.extend(ids)

    def create() -> list[int]:
        with referenced():
            queue(record)
        return created

    result = once(engine, token_id=token_id, key=key, digest=digest, create=create)
    if isinstance(result, Stored):
        response.status_code = result.status_code
        response.headers["Idempotent-Replayed"] = "true"
        return [int(i) for i in result.body["ids"]]
    return result


def _request(email: BatchEmail) -> EmailRequest:
    return EmailRequest.addressed(
        to=email.to,
        cc=email.cc,
        bcc=email.bcc,
        subject=email.subject,
        body=email.body,
        correspondence=email.correspondence,
        priority=email.priority,
        send_after=email.send_after,
        expires_at=email.expires_at,
    )
