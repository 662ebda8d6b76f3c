"""Webhook endpoints as the API takes them and as everything shows them (secret as a flag)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from postroom.webhooks.endpoints import MAX_URL, WebhookEndpoint
from postroom.webhooks.models import EventType

_EXAMPLE: dict[str, Any] = {
    "name": "crm",
    "url": "https://crm.example.com/postroom/events",
    "events": ["email.bounced", "email.failed", "case.status_changed"],
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


class WebhookIn(BaseModel):
    """A webhook endpoint as written through the API; its secret is write-only."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: str = Field(min_length=1, max_length=255, examples=["crm"])
    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="https://, at a public address (hosts in POSTROOM_ALLOWED_ENDPOINT_HOSTS "
        "may be private and use http)",
    )
    events: list[EventType] = Field(min_length=1, description="The event types to send")
    secret: SecretStr | None = Field(
        None,
        description="whsec_ followed by 24 to 64 random bytes in base64 (Standard Webhooks). "
        "Write-only; required on creation, omit it to keep the stored one.",
    )
    enabled: bool = True
    description: str = Field("", max_length=500)


class WebhookView(BaseModel):
    """A webhook endpoint as shown: the signing secret only as ``secret_set``."""

    name: str
    url: str
    events: list[EventType]
    secret_set: bool
    enabled: bool
    description: str

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookView:
        data = endpoint.model_dump(exclude={"secret"})
        return cls(**data, secret_set=True)
