"""The suppression list: list (and export), add, remove."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from postroom.api.auth import admin, require
from postroom.api.problems import ApiProblem, FieldProblem, problem_responses
from postroom.api.schemas.suppressions import (
    SuppressionCreate,
    SuppressionPage,
    SuppressionView,
    as_csv,
)
from postroom.app import Postroom
from postroom.identity import ApiToken, Scope
from postroom.suppressing import chosen_scope
from postroom.suppression import EVERYWHERE, Suppression

MAX_PAGE = 200
Account = Annotated[
    str | None,
    Query(min_length=1, max_length=255, description="Only the entries for this account"),
]
AdminToken = Annotated[ApiToken, Depends(require(Scope.ADMIN))]
Everywhere = Annotated[bool, Query(description="Only the entries that hold for every account")]


def _scope(account: str | None, everywhere: bool) -> str | None:
    if account is not None and everywhere:
        message = "give account or everywhere, not both"
        found = FieldProblem(field="query.everywhere", message=message)
        raise ApiProblem(422, f"query.everywhere: {message}", kind="validation", errors=[found])
    return chosen_scope(account, everywhere=everywhere)


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(
        tags=["suppressions"], dependencies=[admin], responses=problem_responses(401, 403)
    )

    @api.get(
        "/suppressions",
        summary="List suppressed addresses, newest first (admin)",
        response_model=SuppressionPage,
        responses={
            **problem_responses(401, 403, 422),
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        },
    )
    def list_suppressions(
        request: Request,
        *,
        account: Account = None,
        everywhere: Everywhere = False,
        search: Annotated[
            str | None, Query(min_length=1, max_length=320, description="Part of the address")
        ] = None,
        format: Annotated[
            Literal["json", "csv"],
            Query(description="csv: every matching entry as a CSV download (no paging)"),
        ] = "json",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> SuppressionPage | Response:
        """Addresses Postroom does not send to; ``account`` or ``everywhere`` narrow the
        list to one scope, ``search`` to addresses containing the text. ``format=csv``
        exports every matching entry."""
        scope = _scope(account, everywhere)
        if format == "csv":
            return _csv(postroom.suppressions(scope=scope, search=search))
        # One row more than asked says whether a next page exists.
        rows = postroom.suppressions(scope=scope, search=search, limit=limit + 1, offset=offset)
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(limit=limit, offset=offset + limit))
        return SuppressionPage(items=[SuppressionView.of(r) for r in rows[:limit]], next=following)

    @api.post(
        "/suppressions",
        status_code=201,
        summary="Suppress an address by hand (admin)",
        responses=problem_responses(401, 403, 422),
    )
    def add_suppression(
        body: SuppressionCreate, response: Response, token: AdminToken
    ) -> SuppressionView:
        """201 with the new entry (reason ``manual``); 200 with the entry that is already
        there when the address is suppressed in that scope (it is left as it is). Without
        ``account`` it holds for every account."""
        entry, new = postroom.suppress(
            body.address,
            scope=body.account if body.account is not None else EVERYWHERE,
            detail=body.detail,
            operator=f"API token {token.name}",
        )
        response.status_code = 201 if new else 200
        return SuppressionView.of(entry)

    @api.delete(
        "/suppressions/{address}",
        status_code=204,
        response_class=Response,
        summary="Stop suppressing an address (admin)",
        responses=problem_responses(401, 403, 404, 422),
    )
    def remove_suppression(
        address: Annotated[str, Path(min_length=1, max_length=320)],
        account: Account = None,
        everywhere: Everywhere = False,
    ) -> Response:
        """Remove the address from one account's list (``account``), from the every-account
        list (``everywhere``), or, with neither, from every list it is on. 404 when it is
        not suppressed there."""
        postroom.unsuppress(address, scope=_scope(account, everywhere))
        return Response(status_code=204)

    return api


def _csv(entries: list[Suppression]) -> Response:
    return Response(
        as_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )
