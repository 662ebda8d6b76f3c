"""Webhook endpoints and their deliveries as the facade offers them.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from sqlalchemy import Engine

from postroom.config.apply import write_records
from postroom.errors import NotFoundError, StateError
from postroom.records import Change
from postroom.settings import Settings
from postroom.webhooks.deliveries import DeliveryStore
from postroom.webhooks.endpoints import WebhookEndpoint, WebhookEndpointStore
from postroom.webhooks.models import DeliveryStatus, EventType, WebhookAttempt, WebhookDelivery

if TYPE_CHECKING:
    from postroom.app import Postroom

log = logging.getLogger("postroom")
MAX_DELIVERIES = 500  # one page of the delivery list


class Hooking:
    """The webhook methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    webhook_store: WebhookEndpointStore
    delivery_store: DeliveryStore

    # --- endpoints ----------------------------------------------------------------------

    def webhooks(self) -> list[WebhookEndpoint]:
        """Every webhook endpoint, by name."""
        with self.engine.connect() as conn:
            return self.webhook_store.list(conn)

    def webhook(self, name: str) -> WebhookEndpoint:
        with self.engine.connect() as conn:
            return self.webhook_store.get(conn, name)

    def put_webhook(self, endpoint: WebhookEndpoint, *, create: bool = False) -> Change:
        """Create or update an endpoint as ``apply`` does (its URL checked, no DNS).

        ``create``: only a new one, else :class:`~postroom.errors.ExistsError`.
        """
        # The mixin is only ever part of the Postroom that write_records takes.
        report = write_records(cast("Postroom", self), {"webhooks": [endpoint]}, create=create)
        return report.changes[0][2]

    def delete_webhook(self, name: str) -> None:
        """Delete an endpoint; its deliveries still waiting end failed when next tried."""
        with self.engine.begin() as conn:
            self.webhook_store.delete(conn, name)
        log.info("webhook %s deleted", name)

    # --- deliveries ---------------------------------------------------------------------

    def webhook_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        endpoint: str | None = None,
        event_type: EventType | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[WebhookDelivery]:
        """Deliveries newest first; ``before_id`` (the last id seen) pages further back."""
        with self.engine.connect() as conn:
            return self.delivery_store.list(
                conn,
                status=status,
                endpoint=endpoint,
                event_type=event_type,
                limit=max(1, min(limit, MAX_DELIVERIES)),
                before_id=before_id,
            )

    def webhook_delivery(self, delivery_id: int) -> WebhookDelivery:
        with self.engine.connect() as conn:
            return self.delivery_store.get(conn, delivery_id)

    def webhook_attempts(self, delivery_id: int) -> list[WebhookAttempt]:
        """Every try of a delivery, oldest first (NotFoundError when there is no delivery)."""
        with self.engine.connect() as conn:
            self.delivery_store.get(conn, delivery_id)
            return self.delivery_store.attempts(conn, delivery_id)

    def redeliver_webhook(self, delivery_id: int, *, actor: str | None = None) -> WebhookDelivery:
        """Send a delivered or failed delivery again, now, with a new retry window.

        Refused (:class:`~postroom.errors.StateError`) while it is still on its way, or
        when its endpoint was deleted or is disabled: the attempt could only fail.
        """
        with self.engine.begin() as conn:
            current = self.delivery_store.get(conn, delivery_id)
            what = f"webhook delivery #{delivery_id}"
            if current.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
                raise StateError(f"{what} is {current.status}: it is on its way already")
            try:
                endpoint = self.webhook_store.get(conn, current.endpoint)
            except NotFoundError:
                raise StateError(
                    f"{what} cannot be sent again: webhook {current.endpoint} was deleted"
                ) from None
            if not endpoint.enabled:
                raise StateError(
                    f"{what} cannot be sent again: webhook {endpoint.name} is disabled; "
                    "enable it first"
                )
            again = self.delivery_store.redeliver(conn, delivery_id)
        log.info("%s (%s) to be sent again, by %s", what, again.event_type, actor or "someone")
        return again

    def webhook_counts(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status."""
        with self.engine.connect() as conn:
            return self.delivery_store.counts(conn)
