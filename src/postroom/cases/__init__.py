"""Cases, case types, work parties and their send-email steps."""

from postroom.cases.fields import CaseField, FieldType
from postroom.cases.models import (
    AttachmentInfo,
    Case,
    CaseType,
    DeliveryMode,
    HistoryEntry,
    Party,
    Recipient,
    SendEmailStep,
    Trigger,
)

__all__ = [
    "AttachmentInfo",
    "Case",
    "CaseField",
    "CaseType",
    "DeliveryMode",
    "FieldType",
    "HistoryEntry",
    "Party",
    "Recipient",
    "SendEmailStep",
    "Trigger",
]
