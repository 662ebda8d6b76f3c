"""Received mail: the triage list, one message and its raw bytes, attach, open a case,
dismiss; and a case's conversation (what was sent and received, in time order)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from postroom.api.auth import SendToken, admin, require
from postroom.api.ownership import check_case
from postroom.api.problems import ApiProblem, FieldProblem, problem_responses, referenced
from postroom.api.schemas.inbound import (
    AttachToCase,
    CaseFromMessage,
    ConversationEntry,
    ReceivedPage,
    ReceivedView,
)
from postroom.api.schemas.work import CaseView
from postroom.app import Postroom
from postroom.identity import ApiToken, Scope
from postroom.inbound.models import InboundStatus

MAX_PAGE = 200
MessageId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The received message's id")]
_READ = problem_responses(401, 403, 404)
_CHANGE = problem_responses(401, 403, 404, 409, 422)
AdminToken = Annotated[ApiToken, Depends(require(Scope.ADMIN))]


def _actor(token: ApiToken) -> str:
    """Who the case history names for a change made through the API."""
    return f"API token {token.name}"


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(responses=problem_responses(401, 403))
    guarded = APIRouter(
        tags=["inbound"], dependencies=[admin], responses=problem_responses(401, 403)
    )

    @guarded.get(
        "/inbound",
        summary="List received mail, newest first (admin)",
        responses=problem_responses(401, 403, 422),
    )
    def list_received(
        request: Request,
        *,
        case_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        unmatched: Annotated[
            bool, Query(description="Only the triage list: messages that await an admin")
        ] = False,
        status: InboundStatus | None = None,
        account: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> ReceivedPage:
        """Received messages; ``unmatched`` lists those waiting in triage (the same as
        ``status=unmatched``; with another status it is refused)."""
        if unmatched and status not in (None, InboundStatus.UNMATCHED):
            message = "unmatched lists the unmatched messages: give it or a status, not both"
            found = FieldProblem(field="query.status", message=message)
            raise ApiProblem(422, f"query.status: {message}", kind="validation", errors=[found])
        # One row more than asked says whether a next page exists.
        rows = postroom.received(
            case_id=case_id,
            unmatched=unmatched,
            status=status,
            account=account,
            limit=limit + 1,
            offset=offset,
        )
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(limit=limit, offset=offset + limit))
        return ReceivedPage(items=[ReceivedView.of(r) for r in rows[:limit]], next=following)

    @guarded.get("/inbound/{message_id}", responses=_READ)
    def get_received(message_id: MessageId) -> ReceivedView:
        """A received message's headers, routing and reply text (never its raw bytes)."""
        return ReceivedView.of(postroom.received_message(message_id))

    @guarded.get(
        "/inbound/{message_id}/raw",
        response_class=Response,
        responses={
            **problem_responses(401, 403, 404, 409),
            200: {"content": {"message/rfc822": {}}},
        },
    )
    def get_received_raw(message_id: MessageId) -> Response:
        """The message as it was received, as a download (``message/rfc822``).

        409 when its bytes were never kept (a message over the size limit, left on the
        mail server).
        """
        raw = postroom.received_raw(message_id)
        return Response(
            raw,
            media_type="message/rfc822",
            headers={
                # The sender's bytes: never rendered in the browser of whoever opens them.
                "Content-Disposition": f'attachment; filename="received-{message_id}.eml"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    @guarded.post("/inbound/{message_id}/attach", responses=_CHANGE)
    def attach_received(
        message_id: MessageId, body: AttachToCase, token: AdminToken
    ) -> ReceivedView:
        """Thread the message onto a case: its ``.eml``, attachments and a history line.

        409 when its status does not allow it (already matched, a bounce...); 422 when
        the case does not exist.
        """
        postroom.received_message(message_id)  # 404 for the message, before the case
        with referenced("case_id"):
            attached = postroom.attach_received(message_id, body.case_id, actor=_actor(token))
        return ReceivedView.of(attached)

    @guarded.post("/inbound/{message_id}/case", status_code=201, responses=_CHANGE)
    def case_from_received(
        message_id: MessageId,
        body: CaseFromMessage,
        request: Request,
        response: Response,
        token: AdminToken,
    ) -> CaseView:
        """Open a case of ``class_name`` from the message (the sender as its party, the
        case type's inbound data fields filled, ``data`` over them, ``operator`` as its
        creator); 201 with the case, 422 naming the fields the case type still needs."""
        postroom.received_message(message_id)

        def missing() -> str:
            # The case type or the creating operator: whichever the body named is gone.
            if body.operator is None:
                return "class_name"
            with postroom.engine.connect() as conn:
                known = postroom.operator_store.find(conn, body.operator) is not None
            return "class_name" if known else "operator"

        with referenced(missing):
            case = postroom.case_from_received(
                message_id,
                body.class_name,
                actor=_actor(token),
                data=body.data,
                operator=body.operator,
            )
        response.headers["Location"] = str(request.url_for("get_case", case_id=case.id))
        return CaseView.of(case, warnings=case.failed_emails())

    @guarded.post("/inbound/{message_id}/dismiss", responses=problem_responses(401, 403, 404, 409))
    def dismiss_received(message_id: MessageId, token: AdminToken) -> ReceivedView:
        """Take the message off the triage list (it is kept; it can be attached later)."""
        return ReceivedView.of(postroom.dismiss_received(message_id, actor=_actor(token)))

    @api.get("/cases/{case_id}/messages", tags=["cases"], responses=_READ)
    def case_messages(case_id: str, token: SendToken) -> list[ConversationEntry]:
        """The case's conversation: its sent and received mail in time order."""
        check_case(postroom.engine, token, case_id)
        return [ConversationEntry.of(item) for item in postroom.conversation(case_id)]

    api.include_router(guarded)
    return api
