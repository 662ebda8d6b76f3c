"""Webhook endpoints (the catalog's record routes) and deliveries: list, one with its
attempts, redeliver."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from postroom import catalog
from postroom.api.auth import admin, require
from postroom.api.problems import problem_responses
from postroom.api.routes import records
from postroom.api.schemas.webhooks import DeliveryDetail, DeliveryPage, DeliveryView
from postroom.app import Postroom
from postroom.identity import ApiToken, Scope
from postroom.webhooks.models import DeliveryStatus, EventType

MAX_PAGE = 200
DeliveryId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The delivery's id")]
AdminToken = Annotated[ApiToken, Depends(require(Scope.ADMIN))]


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter()
    api.include_router(records.router(postroom, (catalog.WEBHOOKS,)))
    guarded = APIRouter(
        tags=["webhooks"], dependencies=[admin], responses=problem_responses(401, 403)
    )

    @guarded.get(
        "/webhook-deliveries",
        summary="List webhook deliveries, newest first",
        responses=problem_responses(401, 403, 422),
    )
    def list_deliveries(
        request: Request,
        *,
        status: DeliveryStatus | None = None,
        endpoint: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        event_type: EventType | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        before_id: Annotated[
            int | None, Query(ge=1, le=2**31 - 1, description="Only deliveries older than this")
        ] = None,
    ) -> DeliveryPage:
        """Each event on its way to each endpoint; ``next`` pages further back."""
        rows = postroom.webhook_deliveries(
            status=status,
            endpoint=endpoint,
            event_type=event_type,
            limit=limit + 1,  # one more than asked says whether a next page exists
            before_id=before_id,
        )
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(before_id=rows[limit - 1].id))
        return DeliveryPage(items=[DeliveryView.of(r) for r in rows[:limit]], next=following)

    @guarded.get("/webhook-deliveries/{delivery_id}", responses=problem_responses(401, 403, 404))
    def get_delivery(delivery_id: DeliveryId) -> DeliveryDetail:
        """A delivery with its payload (as signed and sent) and every attempt."""
        delivery = postroom.webhook_delivery(delivery_id)
        return DeliveryDetail.with_attempts(delivery, postroom.webhook_attempts(delivery_id))

    @guarded.post(
        "/webhook-deliveries/{delivery_id}/redeliver",
        responses=problem_responses(401, 403, 404, 409),
    )
    def redeliver(delivery_id: DeliveryId, token: AdminToken) -> DeliveryDetail:
        """Send a delivered or failed delivery again, now, with the same ``webhook-id``.

        409 while it is still pending or being sent, or when its endpoint was deleted or
        is disabled.
        """
        delivery = postroom.redeliver_webhook(delivery_id, actor=f"API token {token.name}")
        return DeliveryDetail.with_attempts(delivery, postroom.webhook_attempts(delivery_id))

    api.include_router(guarded)
    return api
