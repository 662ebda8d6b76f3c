"""What a received message tells beyond its case: the ``email.received`` event, and that
its sender's address works again (its bounce suppressions are lifted)."""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from postroom.cases import store as case_store
from postroom.inbound.models import InboundStatus
from postroom.suppression import SuppressionStore
from postroom.webhooks.events import emit
from postroom.webhooks.models import Event, EventType

log = logging.getLogger("postroom.inbound")

# Mail a person wrote: proof that the address receives (and sends) mail again.
_FROM_A_PERSON = (InboundStatus.MATCHED, InboundStatus.NEW_CASE, InboundStatus.UNMATCHED)


def received(
    conn: Connection,
    *,
    received_id: int,
    message_id: str | None,
    account: str,
    sender: str | None,
    subject: str,
    status: InboundStatus,
    case_id: str | None,
    reason: str,
) -> None:
    """Emit ``email.received`` for a stored message (bounces are reported per recipient)."""
    data = {
        "received_id": received_id,
        "message_id": message_id,
        "account": account,
        "from": sender,
        "subject": subject,
        "status": str(status),
        "case_id": case_id,
        "reason": reason,
    }
    emit(conn, [Event(EventType.EMAIL_RECEIVED, data)])


def lift_bounces(
    conn: Connection,
    store: SuppressionStore,
    *,
    sender: str | None,
    status: InboundStatus,
    received_id: int,
    case_id: str | None,
) -> int:
    """Lift the bounce suppressions of a person's address that mail came from; how many.

    Complaints and manual entries stay: someone asked not to be written to.
    """
    if sender is None or status not in _FROM_A_PERSON:
        return 0
    lifted = store.lift_bounces(conn, sender)
    if not lifted:
        return 0
    scopes = ", ".join(sorted("every account" if s.everywhere else s.scope for s in lifted))
    log.info(
        "mail from %s (received message #%d): its bounce suppression lifted (%s)",
        sender,
        received_id,
        scopes,
    )
    if case_id is not None:
        case_store.add_history(
            conn,
            case_id,
            actor=case_store.SYSTEM,
            action="suppression-lifted",
            detail=f"mail came from {sender} (received message #{received_id}): "
            f"its bounce suppression is lifted ({scopes})",
        )
    return len(lifted)
