"""Webhook endpoints and their deliveries as the facade offers them.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

from sqlalchemy import Engine

from postroom.settings import Settings
from postroom.webhooks.deliveries import DeliveryStore
from postroom.webhooks.endpoints import WebhookEndpointStore


class Hooking:
    """The webhook methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    webhook_store: WebhookEndpointStore
    delivery_store: DeliveryStore
