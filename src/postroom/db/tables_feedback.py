"""Tables of what happens after "sent": delivery reports, suppressions and webhooks."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Table, Text

from postroom.db.metadata import metadata
from postroom.db.types import UTCDateTime

# One row per recipient a delivery report (a bounce, a delay, a complaint) speaks of.
# outbox_id is None for a report that names nothing Postroom sent; soft bounces are
# counted per address over a window from here.
delivery_reports = Table(
    "delivery_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inbound_id", Integer, nullable=False, index=True),
    Column("outbox_id", Integer, nullable=True, index=True),
    Column("address", String(320), nullable=False),
    Column("kind", String(16), nullable=False),  # bounced, delayed, complained
    Column("soft", Boolean, nullable=False),  # a bounce whose cause may pass (4.x.x, 5.2.2)
    Column("status", String(16), nullable=True),  # RFC 3463, e.g. 5.1.1
    Column("diagnostic", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_delivery_reports_address", "address", "kind", "at"),
)

# Addresses Postroom does not send to. scope is an account's name, or "*" for every
# account; (address, scope) is unique, the address stored in lower case.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False),
    Column("scope", String(255), nullable=False),
    Column("reason", String(16), nullable=False),  # SuppressionReason
    Column("detail", Text, nullable=False),
    Column("outbox_id", Integer, nullable=True),
    Column("inbound_id", Integer, nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ux_suppressions_address", "address", "scope", unique=True),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),  # event types, e.g. ["email.bounced"]
    Column("secret", Text, nullable=False),  # encrypted, see security.secrets
    Column("enabled", Boolean, nullable=False, default=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per change reported; its id is the webhook-id every delivery of it carries,
# and payload the exact JSON that is signed and sent (the same bytes on every retry).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# An event on its way to one endpoint: claimed under a lease like an outbox row.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # DeliveryStatus
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),  # retries end a window after it
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ux_webhook_deliveries_event", "event_id", "endpoint", unique=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
)
