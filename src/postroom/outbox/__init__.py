"""The durable outbox: statuses, classification, retry policy and storage."""

from postroom.outbox.classify import Classification, Verdict, classify_reply
from postroom.outbox.models import (
    ClaimedEmail,
    DeliveryReport,
    NewEmail,
    OutboxEntry,
    Outcome,
    Recipient,
    RecipientState,
    Refusal,
)
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.status import OutboxStatus, Priority
from postroom.outbox.store import OutboxStore

__all__ = [
    "ClaimedEmail",
    "Classification",
    "DeliveryReport",
    "NewEmail",
    "OutboxEntry",
    "OutboxStatus",
    "OutboxStore",
    "Outcome",
    "Priority",
    "Recipient",
    "RecipientState",
    "Refusal",
    "RetryPolicy",
    "Verdict",
    "classify_reply",
]
