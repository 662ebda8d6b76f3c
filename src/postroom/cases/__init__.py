"""Cases, case types, work parties and their send-email steps."""

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
    "CaseType",
    "DeliveryMode",
    "HistoryEntry",
    "Party",
    "Recipient",
    "SendEmailStep",
    "Trigger",
]
