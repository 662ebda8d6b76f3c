"""The ``webhooks`` section of an apply: where each endpoint may point, and writing them.

Kept apart from :mod:`postroom.config.apply` so that the apply stays a list of sections.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from postroom.errors import ConfigurationError
from postroom.records import Change
from postroom.webhooks.endpoints import WebhookEndpoint, WebhookEndpointStore
from postroom.webhooks.urls import check_webhook_url


def check_webhooks(endpoints: Sequence[WebhookEndpoint], allowed: Collection[str]) -> None:
    """Refuse an endpoint whose URL points at a host events may not go to (no DNS here)."""
    for endpoint in endpoints:
        try:
            check_webhook_url(endpoint.url, allowed=allowed, resolve=False)
        except ConfigurationError as exc:
            # "webhook crm: url https://10.0.0.5/: 10.0.0.5 is a private address; ..."
            why = str(exc).removeprefix("webhook URL ")
            raise ConfigurationError(f"webhook {endpoint.name}: url {why}") from None


def put_webhooks(
    store: WebhookEndpointStore, conn: Connection, endpoints: Sequence[WebhookEndpoint]
) -> list[tuple[str, str, Change]]:
    """Upsert ``endpoints`` in the apply's transaction; what each write did."""
    return [("webhook", e.name, store.put(conn, e)) for e in endpoints]
