"""Signed webhooks: events written with their change, delivered at least once."""

from postroom.webhooks.events import emit
from postroom.webhooks.models import DeliveryStatus, Event, EventType

__all__ = ["DeliveryStatus", "Event", "EventType", "emit"]
