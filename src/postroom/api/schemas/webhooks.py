"""Webhook endpoints and deliveries as the API shows them (see :mod:`postroom.catalog`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from postroom.catalog.webhook_views import WebhookIn, WebhookView
from postroom.webhooks.models import DeliveryStatus, EventType, WebhookAttempt, WebhookDelivery

__all__ = [
    "AttemptView",
    "DeliveryDetail",
    "DeliveryPage",
    "DeliveryView",
    "WebhookIn",
    "WebhookView",
]


class AttemptView(BaseModel):
    """One try of a delivery: the endpoint's HTTP status, or why there was none."""

    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptView:
        return cls(
            at=attempt.at,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
        )


class DeliveryView(BaseModel):
    """An event on its way to one endpoint; ``event_id`` is the ``webhook-id`` it carries."""

    id: int
    event_id: str
    event_type: EventType
    endpoint: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending)")
    last_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def fields_of(cls, delivery: WebhookDelivery) -> dict[str, Any]:
        pending = delivery.status is DeliveryStatus.PENDING
        return {
            "id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "endpoint": delivery.endpoint,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "next_attempt_at": delivery.next_attempt_at if pending else None,
            "last_code": delivery.last_code,
            "last_error": delivery.last_error,
            "created_at": delivery.created_at,
            "delivered_at": delivery.delivered_at,
        }

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryView:
        return cls(**cls.fields_of(delivery))


class DeliveryDetail(DeliveryView):
    """A delivery with the payload it sends and every attempt so far."""

    payload: dict[str, Any] = Field(
        description="The JSON body as signed and sent: {type, timestamp, data}"
    )
    attempt_log: list[AttemptView] = Field(description="Every try, oldest first")

    @classmethod
    def with_attempts(
        cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt]
    ) -> DeliveryDetail:
        return cls(
            **cls.fields_of(delivery),
            payload=json.loads(delivery.payload),
            attempt_log=[AttemptView.of(a) for a in attempts],
        )


class DeliveryPage(BaseModel):
    """One page of deliveries, newest first; ``next`` is the following page's URL."""

    items: list[DeliveryView]
    next: str | None = Field(None, description="URL of the next page; null on the last")
