"""Webhook endpoints: where events go, which ones, and the secret that signs them."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from postroom.db import tables
from postroom.records import SecretRecordStore
from postroom.security import SecretBox
from postroom.validation import check_record_name
from postroom.webhooks.models import EventType

t = tables.webhook_endpoints

SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
MIN_SECRET_BYTES = 24  # the Standard Webhooks specification: 24 to 64 random bytes
MAX_SECRET_BYTES = 64
MAX_URL = 2048


class WebhookEndpoint(BaseModel):
    """An application's URL for events, the event types it wants, and its signing secret."""

    # Errors never quote what was given: it may be the secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str
    url: str = Field(max_length=MAX_URL)
    events: list[EventType] = Field(min_length=1)
    secret: SecretStr = Field(
        description="whsec_ followed by 24 to 64 random bytes in base64 (Standard Webhooks)"
    )
    enabled: bool = True
    description: str = Field("", max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_record_name(v, what="webhook name")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry a user name or password (use the secret)")
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in v.strip()):
            raise ValueError("must not contain spaces or control characters")
        return v.strip()

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[EventType]) -> list[EventType]:
        return sorted(set(v), key=lambda e: list(EventType).index(e))

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        secret_bytes(v.get_secret_value())
        return v


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_`` secret; ValueError (without the secret) when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX} (a Standard Webhooks secret)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes, not {len(key)}"
        )
    return key


class WebhookEndpointStore(SecretRecordStore[WebhookEndpoint]):
    """Reads and writes :class:`WebhookEndpoint` records; secrets are encrypted."""

    def __init__(self, secrets: SecretBox) -> None:
        super().__init__(
            secrets,
            table=t,
            model=WebhookEndpoint,
            encrypted="secret",
            noun="webhook",
            label="the secret of webhook",
        )
