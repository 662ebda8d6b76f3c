"""Emails: queue an ad-hoc one (idempotently), read, list, retry, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

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
from postroom.cases.adhoc import QueuedEmail, prefixed
from postroom.cases.emails import EmailRequest
from postroom.db.engine import reading
from postroom.errors import InvalidFieldsError
from postroom.outbox import OutboxStatus
from postroom.outbox.search import OutboxQuery, SortKey, outbox_window

MAX_PAGE = 200
EmailId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(tags=["emails"], responses=problem_responses(401, 403))

    @api.post("/emails", status_code=201, responses=problem_responses(401, 403, 422))
    def send_email(
        body: EmailCreate,
        request: Request,
        response: Response,
        token: SendToken,
        key: IdempotencyKey = None,
    ) -> QueuedEmails:
        """Queue an email for a case (its class's account) or a class (``class_name``).

        Subject and body are sent as written unless ``template`` is true. The answer
        names the account chosen and why, and warns of a class that matches nothing.
        """
        if body.case_id is not None:
            check_case(postroom.engine, token, body.case_id)  # a send token's own cases only
        answer = _queue_once(
            postroom.engine,
            token_id=token.id,
            key=key,
            digest=request_hash("POST /emails", body.model_dump(mode="json")),
            response=response,
            queue=lambda record: postroom.queue_email(
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
                template=body.template,
                language=body.language,
                record=lambda conn, queued: record(conn, _answer(queued)),
            ),
        )
        ids = [int(i) for i in answer["ids"]]
        response.headers["Location"] = str(request.url_for("get_email", email_id=ids[0]))
        return QueuedEmails(
            ids=ids,
            emails=[EmailView.of(postroom.outbox_entry(i)) for i in ids],
            account=str(answer.get("account", "")),
            account_reason=str(answer.get("account_reason", "")),
            warnings=[str(w) for w in answer.get("warnings", [])],
        )

    @api.post("/emails/batch", status_code=201, responses=problem_responses(401, 403, 422))
    def send_batch(
        body: EmailBatchCreate, response: Response, token: SendToken, key: IdempotencyKey = None
    ) -> QueuedBatch:
        """Queue many ad-hoc emails in one transaction: all of them, or none (the error
        names the email, e.g. ``body.emails.3.to.1``). Templates and the account are
        looked up once."""
        requests = [_request(e, number) for number, e in enumerate(body.emails)]
        answer = _queue_once(
            postroom.engine,
            token_id=token.id,
            key=key,
            digest=request_hash("POST /emails/batch", body.model_dump(mode="json")),
            response=response,
            queue=lambda record: postroom.queue_many(
                requests,
                class_name=body.class_name,
                record=lambda conn, queued: record(conn, _answer(queued)),
            ),
        )
        return QueuedBatch(
            ids=[int(i) for i in answer["ids"]],
            account=str(answer.get("account", "")),
            account_reason=str(answer.get("account_reason", "")),
            warnings=[str(w) for w in answer.get("warnings", [])],
        )

    @api.get("/emails", dependencies=[admin], summary="List emails, newest first")
    def list_emails(
        request: Request,
        *,
        status: OutboxStatus | None = None,
        account: Annotated[str | None, Query(max_length=255)] = None,
        case_id: Annotated[str | None, Query(max_length=64)] = None,
        correspondence: Annotated[
            str | None, Query(max_length=255, description="Only emails rendered from it")
        ] = None,
        correspondence_version: Annotated[
            int | None,
            Query(ge=1, le=2**31 - 1, description="Only those rendered from this version of it"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> EmailPage:
        query = OutboxQuery(
            status=status,
            account=account,
            case_id=case_id,
            correspondence=correspondence,
            version=correspondence_version,
            sort=SortKey.ID,
        )
        # One row more than asked says whether a next page exists.
        with reading(postroom.engine) as conn:
            rows = outbox_window(conn, query, limit=limit + 1, offset=offset)
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


Recorder = Callable[[Connection, dict[str, Any]], None]


def _answer(queued: QueuedEmail) -> dict[str, Any]:
    return {
        "ids": list(queued.ids),
        "account": queued.account,
        "account_reason": queued.reason,
        "warnings": list(queued.warnings),
    }


def _queue_once(
    engine: Engine,
    *,
    token_id: str,
    key: str | None,
    digest: str,
    response: Response,
    queue: Callable[[Recorder], object],
) -> dict[str, Any]:
    """The answer ``queue`` gives (``ids`` and more), or on a replayed key the first one.

    ``queue`` hands its recorder the answer in the creating transaction: who owns the
    new emails and the key's answer are committed with them.
    """
    created: dict[str, Any] = {}

    def record(conn: Connection, answer: dict[str, Any]) -> None:
        for outbox_id in answer["ids"]:
            record_owner(conn, token_id=token_id, kind="email", ident=str(outbox_id))
        record_key(conn, token_id=token_id, key=key, digest=digest, stored=Stored(201, answer))
        created.update(answer)

    def create() -> dict[str, Any]:
        with referenced():
            queue(record)
        return created

    result = once(engine, token_id=token_id, key=key, digest=digest, create=create)
    if isinstance(result, Stored):
        response.status_code = result.status_code
        response.headers["Idempotent-Replayed"] = "true"
        return result.body
    return result


def _request(email: BatchEmail, number: int) -> EmailRequest:
    try:
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
            template=email.template,
            language=email.language,
        )
    except InvalidFieldsError as exc:
        raise prefixed(exc, f"emails.{number}.") from None
