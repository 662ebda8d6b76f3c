"""Reads and writes of webhook deliveries: leased claims, outcomes, attempts, redelivery.

Claims work as the outbox's do: due rows (or rows whose lease lapsed) are leased to one
agent; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many agents claim side by side. An
outcome is written only while its agent still holds the lease. Outcomes are written many
at a time (``record_many``): one transaction, one statement per kind of outcome, instead
of a transaction (and a wait for the write lock) per delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.webhooks.models import (
    DeliveryStatus,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    check_transition,
    sources_of,
)

t = tables.webhook_deliveries
_EV = tables.webhook_events
_AT = tables.webhook_attempts
_EP = tables.webhook_endpoints
GONE = 410


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery an agent holds under a lease, with the payload to sign and send."""

    id: int
    event_id: str
    event_type: str
    endpoint: str
    payload: str
    attempts: int  # including this one
    window_start: datetime


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt did: delivered, to try again at ``next_attempt_at``, or failed."""

    id: int
    status: DeliveryStatus  # DELIVERED, PENDING (retry) or FAILED
    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None  # for PENDING


_VIEW_COLUMNS = (
    t.c.id,
    t.c.event_id,
    _EV.c.type,
    t.c.endpoint,
    t.c.status,
    t.c.attempts,
    t.c.next_attempt_at,
    t.c.last_code,
    t.c.last_error,
    t.c.created_at,
    t.c.delivered_at,
    _EV.c.payload,
)


def _view(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        event_id=row.event_id,
        event_type=EventType(row.type),
        endpoint=row.endpoint,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_code=row.last_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        payload=row.payload,
    )


def _outcome_params(outcome: DeliveryOutcome) -> dict[str, Any]:
    return {
        "b_id": outcome.id,
        "b_at": outcome.at,
        "b_code": outcome.status_code,
        "b_error": outcome.error,
        "b_next": outcome.next_attempt_at or outcome.at,
    }


def _outcome_update(status: DeliveryStatus, owner: str) -> Any:
    """One UPDATE for every outcome of ``status``, run once per outcome's parameters."""
    values: dict[str, Any] = {
        "status": status.value,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_code": bindparam("b_code"),
        "last_error": bindparam("b_error"),
        "updated_at": bindparam("b_at"),
    }
    if status is DeliveryStatus.DELIVERED:
        values["delivered_at"] = bindparam("b_at")
    if status is DeliveryStatus.PENDING:
        values["next_attempt_at"] = bindparam("b_next")
    return (
        update(t)
        .where(
            t.c.id == bindparam("b_id"),
            t.c.status == DeliveryStatus.SENDING.value,
            t.c.lease_owner == owner,
        )
        .values(**values)
    )


class DeliveryStore:
    """Webhook deliveries: what the dispatcher claims and records, what people see."""

    def anything_due(self, conn: Connection, *, now: datetime | None = None) -> bool:
        """Whether a claim would find a delivery: a read, so that idle rounds take no lock."""
        return bool(conn.execute(select(exists().where(_due(now or utcnow())))).scalar())

    def claim(
        self,
        conn: Connection,
        *,
        owner: str,
        limit: int,
        lease: float,
        now: datetime | None = None,
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries (or ones whose lease lapsed) to ``owner``."""
        now = now or utcnow()
        due = _due(now)
        pick = select(t.c.id).where(due).order_by(t.c.next_attempt_at, t.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = [r.id for r in conn.execute(pick)]
        if not ids:
            return []
        conn.execute(
            update(t)
            .where(t.c.id.in_(ids))
            .values(
                status=DeliveryStatus.SENDING.value,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease),
                attempts=t.c.attempts + 1,
                updated_at=now,
            )
        )
        rows = conn.execute(
            select(
                t.c.id,
                t.c.event_id,
                _EV.c.type,
                t.c.endpoint,
                _EV.c.payload,
                t.c.attempts,
                t.c.window_start,
            )
            .join(_EV, _EV.c.id == t.c.event_id)
            .where(t.c.id.in_(ids))
            .order_by(t.c.id)
        )
        return [
            ClaimedDelivery(
                id=r.id,
                event_id=r.event_id,
                event_type=r.type,
                endpoint=r.endpoint,
                payload=r.payload,
                attempts=r.attempts,
                window_start=r.window_start,
            )
            for r in rows
        ]

    def record(self, conn: Connection, outcome: DeliveryOutcome, *, owner: str) -> bool:
        """Write an attempt and its outcome; False when the lease had passed to another."""
        return outcome.id in self.record_many(conn, [outcome], owner=owner)

    def record_many(
        self, conn: Connection, outcomes: Sequence[DeliveryOutcome], *, owner: str
    ) -> set[int]:
        """Write attempts and their outcomes; the ids whose lease ``owner`` still held.

        Every attempt is kept (it happened); a delivery's status changes only while
        ``owner`` holds its lease, so an outcome that comes after another agent took the
        delivery over changes nothing of what that agent does.
        """
        if not outcomes:
            return set()
        ids = [o.id for o in outcomes]
        held = select(t.c.id).where(
            t.c.id.in_(ids),
            t.c.status == DeliveryStatus.SENDING.value,
            t.c.lease_owner == owner,
        )
        if conn.dialect.name == "postgresql":
            held = held.with_for_update()  # a claim of a lapsed lease waits until we commit
        kept = set(conn.execute(held).scalars())
        by_status: dict[DeliveryStatus, list[dict[str, Any]]] = {}
        for o in outcomes:
            if o.id in kept:
                by_status.setdefault(o.status, []).append(_outcome_params(o))
        for status, params in by_status.items():
            conn.execute(_outcome_update(status, owner), params)
        conn.execute(
            insert(_AT),
            [
                {
                    "delivery_id": o.id,
                    "at": o.at,
                    "status_code": o.status_code,
                    "error": o.error,
                    "duration_ms": o.duration_ms,
                }
                for o in outcomes
            ],
        )
        gone = [o.id for o in outcomes if o.id in kept and o.status_code == GONE]
        if gone:
            # 410 Gone: the receiver asks for no more events. Its endpoint is disabled
            # (an admin enables it again); what waits for it ends as disabled.
            named = select(t.c.endpoint).where(t.c.id.in_(gone)).scalar_subquery()
            conn.execute(
                update(_EP)
                .where(_EP.c.name.in_(named), _EP.c.enabled.is_(True))
                .values(enabled=False, updated_at=outcomes[0].at)
            )
        return kept

    def release(self, conn: Connection, ids: list[int], *, owner: str) -> int:
        """Give back claimed deliveries unsent (the agent is stopping): due again now."""
        if not ids:
            return 0
        return conn.execute(
            update(t)
            .where(
                t.c.id.in_(ids),
                t.c.status == DeliveryStatus.SENDING.value,
                t.c.lease_owner == owner,
            )
            .values(
                status=DeliveryStatus.PENDING.value,
                lease_owner=None,
                lease_expires_at=None,
                attempts=t.c.attempts - 1,
            )
        ).rowcount

    def get(self, conn: Connection, delivery_id: int) -> WebhookDelivery:
        row = conn.execute(
            select(*_VIEW_COLUMNS).join(_EV, _EV.c.id == t.c.event_id).where(t.c.id == delivery_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no webhook delivery #{delivery_id}")
        return _view(row)

    def attempts(self, conn: Connection, delivery_id: int) -> list[WebhookAttempt]:
        """Every try of a delivery, oldest first."""
        rows = conn.execute(
            select(_AT).where(_AT.c.delivery_id == delivery_id).order_by(_AT.c.at, _AT.c.id)
        )
        return [
            WebhookAttempt(
                at=r.at, status_code=r.status_code, error=r.error, duration_ms=r.duration_ms
            )
            for r in rows
        ]

    def redeliver(
        self, conn: Connection, delivery_id: int, *, now: datetime | None = None
    ) -> WebhookDelivery:
        """Send a delivered or failed delivery again: due now, with a new retry window."""
        now = now or utcnow()
        current = self.get(conn, delivery_id)
        check_transition(
            current.status, DeliveryStatus.PENDING, what=f"webhook delivery #{delivery_id}"
        )
        conn.execute(
            update(t)
            .where(
                t.c.id == delivery_id,
                t.c.status.in_([s.value for s in sources_of(DeliveryStatus.PENDING)]),
                t.c.status != DeliveryStatus.SENDING.value,
            )
            .values(
                status=DeliveryStatus.PENDING.value,
                next_attempt_at=now,
                window_start=now,
                last_error=None,
                updated_at=now,
            )
        )
        return self.get(conn, delivery_id)

    def list(
        self,
        conn: Connection,
        *,
        status: DeliveryStatus | None = None,
        endpoint: str | None = None,
        event_type: EventType | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[WebhookDelivery]:
        """Newest first; ``before_id`` pages further back."""
        query = select(*_VIEW_COLUMNS).join(_EV, _EV.c.id == t.c.event_id)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if endpoint is not None:
            query = query.where(t.c.endpoint == endpoint)
        if event_type is not None:
            query = query.where(_EV.c.type == event_type.value)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        query = query.order_by(t.c.id.desc()).limit(limit)
        return [_view(r) for r in conn.execute(query)]

    def counts(self, conn: Connection) -> dict[DeliveryStatus, int]:
        rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status))
        found = {DeliveryStatus(s): n for s, n in rows}
        return {s: found.get(s, 0) for s in DeliveryStatus}


def _due(now: datetime) -> ColumnElement[bool]:
    """Due for a first or another attempt, or held under a lease that has lapsed."""
    return or_(
        and_(t.c.status == DeliveryStatus.PENDING.value, t.c.next_attempt_at <= now),
        and_(t.c.status == DeliveryStatus.SENDING.value, t.c.lease_expires_at <= now),
    )
