"""Immediate delivery (a step's ``immediate: true``) in the caller's thread of control.

The caller may be inside an event loop of its own (a web request, say), so the
attempt runs in a fresh loop on a thread of its own and is joined.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Engine

from postroom.agent.delivery import Deliverer, SenderLoader
from postroom.agent.recording import record_outcomes
from postroom.db.types import utcnow
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.status import OutboxStatus
from postroom.outbox.store import OutboxStore
from postroom.transports.base import TransportFactory

T = TypeVar("T")


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
) -> None:
    """One attempt for rows ``owner`` claimed; what did not go through waits for the agent."""

    async def attempt() -> None:
        deliverer = Deliverer(
            factory=factory, policy=policy, connections_per_account=connections_per_account
        )
        try:
            outcomes = await deliverer.deliver(rows, load_sender)
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
