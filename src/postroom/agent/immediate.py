"""Immediate delivery (a step's ``immediate: true``) in the caller's thread of control.

The caller may be inside an event loop of its own (a web request, say), so the
attempt runs in a fresh loop on a thread of its own and is joined.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from postroom.accounts.limits import Limits
from postroom.agent.agent import new_agent_id
from postroom.agent.delivery import Deliverer, SenderLoader
from postroom.agent.recording import record_outcomes
from postroom.agent.throttle import admit, release_slots
from postroom.db.types import utcnow
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import OutboxStore
from postroom.suppression.claim import mark_suppressed
from postroom.transports.base import TransportFactory

T = TypeVar("T")
log = logging.getLogger("postroom.agent")


def run_in_own_loop(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` to completion in a new event loop on a thread of its own."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(work()))
        except BaseException as exc:  # handed over to the calling thread
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return results[0]


def deliver_claimed(
    rows: Sequence[ClaimedEmail],
    *,
    engine: Engine,
    outbox: OutboxStore,
    factory: TransportFactory,
    policy: RetryPolicy,
    connections_per_account: int,
    load_sender: SenderLoader,
    owner: str,
    connections: Mapping[str, int] | None = None,
) -> None:
    """One attempt for rows ``owner`` claimed; what did not go through waits for the agent."""

    async def attempt() -> None:
        deliverer = Deliverer(
            factory=factory, policy=policy, connections_per_account=connections_per_account
        )
        try:
            outcomes = await deliverer.deliver(rows, load_sender, connections=connections)
        finally:
            await deliverer.close()
        # The agent takes over at once, unless the service asked for a pause (refund).
        outcomes = [
            replace(o, next_attempt_at=utcnow())
            if o.status is OutboxStatus.RETRY and not o.refund
            else o
            for o in outcomes
        ]
        await asyncio.to_thread(
            record_outcomes,
            engine,
            outbox,
            outcomes,
            {r.id: r for r in rows},
            owner=owner,
            hold_delay=policy.delay,
        )

    run_in_own_loop(attempt)


def deliver_ids(
    outbox_ids: Sequence[int],
    *,
    engine: Engine,
    outbox: OutboxStore,
    limits_of: Callable[[Connection, str], Limits],
    factory: TransportFactory,
    policy: RetryPolicy,
    connections_per_account: int,
    lease: float,
    load_sender: SenderLoader,
) -> None:
    """Claim these queued rows and try them once; failures and limits leave them queued."""
    if not outbox_ids:
        return
    owner = f"immediate:{new_agent_id()}"
    with engine.begin() as conn:
        claimed = outbox.claim_ids(conn, outbox_ids, owner=owner, lease=lease)
        # Account limits hold here too: what they put off goes back for the agent.
        admission = admit(
            conn,
            claimed,
            outbox=outbox,
            limits_of=lambda name: limits_of(conn, name),
            owner=owner,
            connections_per_account=connections_per_account,
            lease=lease,
            now=utcnow(),
        )
        rows = mark_suppressed(conn, admission.rows)
    if not rows:
        return
    try:
        deliver_claimed(
            rows,
            engine=engine,
            outbox=outbox,
            factory=factory,
            policy=policy,
            connections_per_account=connections_per_account,
            load_sender=load_sender,
            owner=owner,
            connections=admission.connections,
        )
    except Exception:
        # The case is committed and its emails are in the outbox: the agent sends them
        # once the lease passes. Immediate delivery is a courtesy, not a promise.
        log.exception("immediate delivery failed; the sender agent will take over")
    finally:
        if admission.connections:
            with engine.begin() as conn:
                release_slots(conn, owner=owner)
