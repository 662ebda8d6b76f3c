"""Writing attempt outcomes back, and attaching sent emails to their cases."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import Connection, Engine

from postroom.accounts.holds import HoldStore
from postroom.cases import store as case_store
from postroom.db.types import utcnow
from postroom.outbox.events import outcome_events
from postroom.outbox.models import ClaimedEmail, Outcome, RecipientState
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import OutboxStore
from postroom.webhooks.events import emit, listening
from postroom.webhooks.models import Event

log = logging.getLogger("postroom.agent")


@dataclass(frozen=True, slots=True)
class Tally:
    """How many recorded outcomes ended sent, failed or waiting for a retry."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    held: int = 0
    lost: int = 0  # the lease had passed to another agent; its result counts


@dataclass(slots=True)
class AgentStats:
    """What an agent did while it ran: outcomes written, by how they ended, and batches."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    held: int = 0
    lost: int = 0
    batches: int = 0

    def add(self, tally: Tally) -> None:
        for f in fields(Tally):
            setattr(self, f.name, getattr(self, f.name) + getattr(tally, f.name))


def record_outcomes(
    engine: Engine,
    outbox: OutboxStore,
    outcomes: Sequence[Outcome],
    claimed: Mapping[int, ClaimedEmail],
    *,
    owner: str,
    hold_delay: Callable[[int], float],
) -> Tally:
    """Record every outcome in one transaction (committed before anything is reported).

    Account holds follow in the same transaction: refused credentials hold the account
    (the next check after ``hold_delay(failures)`` seconds), a delivery lifts its hold.
    The webhook events of the outcomes this owner still held are written with them, in
    one go; a lost lease reports nothing (the other agent's outcome stands).
    """
    counts = dict.fromkeys(("sent", "failed", "retried", "held", "lost"), 0)
    refused: dict[str, str] = {}
    delivered: set[str] = set()
    events: list[Event] = []
    with engine.begin() as conn:
        recorded = outbox.record_many(conn, outcomes, owner=owner)
        # Most databases have no endpoint: then no event is built at all.
        endpoints = listening(conn)
        for outcome in outcomes:
            row = claimed[outcome.id]
            if outcome.id not in recorded:
                log.warning(
                    "outbox #%s: lease lost to another agent; its result stands", outcome.id
                )
                counts["lost"] += 1
                continue
            annotate_case(conn, outcome, row)
            if endpoints:
                events.extend(outcome_events(outcome, row))
            if outcome.credentials_refused:
                refused[row.account] = outcome.last_error or "credentials refused"
            elif outcome.newly_delivered:
                delivered.add(row.account)
            counts[_bucket(outcome.status)] += 1
        emit(conn, events, endpoints=endpoints)
        _update_holds(conn, outbox, refused, delivered, hold_delay)
    return Tally(**counts)


def _bucket(status: OutboxStatus) -> str:
    return {
        OutboxStatus.SENT: "sent",
        OutboxStatus.FAILED: "failed",
        OutboxStatus.EXPIRED: "failed",  # not delivered, and never will be
        OutboxStatus.HELD: "held",
    }.get(status, "retried")


def _update_holds(
    conn: Connection,
    outbox: OutboxStore,
    refused: Mapping[str, str],
    delivered: set[str],
    delay: Callable[[int], float],
) -> None:
    holds = HoldStore()
    now = utcnow()
    for account, reason in refused.items():
        hold = holds.get(conn, account)
        # Another agent may have held it a moment ago: one refusal, one extension.
        if hold is None or not hold.active(now):
            holds.hold(conn, account, reason=reason.removeprefix("held: "), now=now, delay=delay)
            log.warning("account %s is held: %s", account, reason)
    for account in delivered - set(refused):
        lifted = holds.lift(conn, account)
        # Released whether or not this agent lifted the hold: another agent may have
        # held rows while the hold was being lifted elsewhere.
        released = outbox.release_held(conn, account, now=now)
        if lifted or released:
            log.info("account %s works again: %d held emails queued", account, released)


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
    elif outcome.outcome_unknown:
        case_store.add_history(
            conn,
            row.case_id,
            actor="agent",
            action="email-outcome-unknown",
            detail=f"outbox #{row.id} '{row.subject}': {outcome.last_error}",
        )
    elif outcome.status is OutboxStatus.FAILED:
        case_store.add_history(
            conn,
            row.case_id,
            actor="agent",
            action="email-failed",
            detail=f"outbox #{row.id} '{row.subject}' failed: {outcome.last_error}",
        )
    elif outcome.status is OutboxStatus.EXPIRED:
        case_store.add_history(
            conn,
            row.case_id,
            actor="agent",
            action="email-expired",
            detail=f"outbox #{row.id} '{row.subject}' not sent: {outcome.last_error}",
        )
