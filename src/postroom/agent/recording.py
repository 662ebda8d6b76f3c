"""Writing attempt outcomes back, and attaching sent emails to their cases."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from postroom.cases import store as case_store
from postroom.outbox.models import ClaimedEmail, Outcome, RecipientState
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import OutboxStore

log = logging.getLogger("postroom.agent")


@dataclass(frozen=True, slots=True)
class Tally:
    """How many recorded outcomes ended sent, failed or waiting for a retry."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0  # the lease had passed to another agent; its result counts


def record_outcomes(
    engine: Engine,
    outbox: OutboxStore,
    outcomes: Sequence[Outcome],
    claimed: Mapping[int, ClaimedEmail],
    *,
    owner: str,
) -> Tally:
    """Record every outcome in one transaction (committed before anything is reported)."""
    sent = failed = retried = lost = 0
    with engine.begin() as conn:
        held = outbox.record_many(conn, outcomes, owner=owner)
        for outcome in outcomes:
            if outcome.id not in held:
                log.warning(
                    "outbox #%s: lease lost to another agent; its result stands", outcome.id
                )
                lost += 1
                continue
            annotate_case(conn, outcome, claimed[outcome.id])
            if outcome.status is OutboxStatus.SENT:
                sent += 1
            elif outcome.status is OutboxStatus.FAILED:
                failed += 1
            else:
                retried += 1
    return Tally(sent=sent, failed=failed, retried=retried, lost=lost)


def annotate_case(conn: Connection, outcome: Outcome, row: ClaimedEmail) -> None:
    """On first delivery attach the sent .eml to the case; note final failures there."""
    if row.case_id is None:
        return
    accepted = [r.address for r in outcome.recipients if r.state is RecipientState.ACCEPTED]
    refused = [
        f"{r.address} ({r.code} {r.text})"
        for r in outcome.recipients
        if r.state is RecipientState.REFUSED
    ]
    if outcome.newly_delivered:
        name = f"email-{row.id}.eml"
        case_store.add_attachment(
            conn,
            row.case_id,
            name=name,
            content_type="message/rfc822",
            content=row.message,
            outbox_id=row.id,
        )
        detail = (
            f"outbox #{row.id} '{row.subject}' sent from account {row.account} to "
            f"{', '.join(accepted)}; attached as {name}"
        )
        if refused:
            detail += f"; refused: {'; '.join(refused)}"
        case_store.add_history(conn, row.case_id, actor="agent", action="email-sent", detail=detail)
    elif outcome.status is OutboxStatus.FAILED:
        case_store.add_history(
            conn,
            row.case_id,
            actor="agent",
            action="email-failed",
            detail=f"outbox #{row.id} '{row.subject}' failed: {outcome.last_error}",
        )
