"""The ``data`` of each event type: one shape per kind of record, shared by every emitter."""

from __future__ import annotations

from typing import Any

from postroom.outbox.models import Recipient


def email_data(
    *,
    email_id: int,
    message_id: str,
    case_id: str | None,
    account: str | None,
    subject: str,
    status: str,
) -> dict[str, Any]:
    """What every ``email.*`` event carries about its outbox row."""
    return {
        "email_id": email_id,
        "message_id": message_id,
        "case_id": case_id,
        "account": account,
        "subject": subject,
        "status": status,
    }


def recipient_data(recipient: Recipient) -> dict[str, Any]:
    """One recipient's state, for per-recipient events (bounced, suppressed, …)."""
    return {
        "address": recipient.address,
        "state": str(recipient.state),
        "code": recipient.code,
        "enhanced": recipient.enhanced,
        "diagnostic": recipient.text,
    }
