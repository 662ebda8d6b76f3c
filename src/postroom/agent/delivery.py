"""Delivering claimed rows: a connection pool per account and the per-row outcome."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from postroom.accounts.models import EmailAccount, UnknownOutcome
from postroom.bounces.verp import verp_address
from postroom.db.types import utcnow
from postroom.errors import (
    CredentialsRejectedError,
    DeliveryError,
    PostroomError,
    TransientDeliveryError,
)
from postroom.outbox.models import ClaimedEmail, DeliveryReport, Outcome
from postroom.outbox.outcome import HELD_STAGE, decide, expired, nobody_left
from postroom.outbox.retry import RetryPolicy
from postroom.transports.base import DsnRequest, Envelope, Sender, Transport, TransportFactory

log = logging.getLogger("postroom.agent")

SenderLoader = Callable[[str], Sender]
OutcomeSink = Callable[[Outcome], None]

# Failures at these stages concern the connection or the account, not one message.
CONNECTION_STAGES = frozenset(
    {"account", "connect", "EHLO", "STARTTLS", "AUTH", "token", "throttled", "mailbox"}
)


class _AccountPool:
    """Idle connections of one account; at most ``limit`` open at once."""

    def __init__(self, sender: Sender, limit: int) -> None:
        self.sender = sender
        self.idle: list[Transport] = []
        self.slots = asyncio.Semaphore(limit)


class Deliverer:
    """Sends claimed rows over pooled transports and decides each row's outcome."""

    def __init__(
        self,
        *,
        factory: TransportFactory,
        policy: RetryPolicy,
        connections_per_account: int,
    ) -> None:
        self._factory = factory
        self._policy = policy
        self._limit = connections_per_account
        self._pools: dict[str, _AccountPool] = {}

    async def deliver(
        self,
        rows: Sequence[ClaimedEmail],
        load: SenderLoader,
        *,
        connections: Mapping[str, int] | None = None,
        on_outcome: OutcomeSink | None = None,
    ) -> list[Outcome]:
        """One attempt for every row; rows of one account share its connections.

        ``connections`` caps the connections of some accounts below the pool's limit
        (the slots of a limited account this agent holds). ``on_outcome`` hears of each
        outcome as soon as it is decided (the agent writes them while the batch goes on).
        """
        caps = connections or {}
        outcomes = _Outcomes(on_outcome)
        by_account: dict[str, list[ClaimedEmail]] = defaultdict(list)
        for row in rows:
            by_account[row.account].append(row)
        jobs: list[Coroutine[Any, Any, None]] = []
        for name, account_rows in by_account.items():
            try:
                pool = await self._pool(name, load)
            except (PostroomError, SQLAlchemyError) as exc:
                # A database that is away while the account is read: nothing was sent,
                # so the rows simply wait for another turn.
                reason = exc if isinstance(exc, PostroomError) else "database unavailable"
                error = TransientDeliveryError(f"account {name}: {reason}", stage="account")
                outcomes.extend(self._decide(r, error) for r in account_rows)
                continue
            hold = pool.sender.hold
            if hold is not None and hold.active(utcnow()):
                # Its credentials were refused: no request until the hold's next check.
                held = CredentialsRejectedError(hold.reason, stage=HELD_STAGE)
                outcomes.extend(self._decide(r, held) for r in account_rows)
                continue
            queue: asyncio.Queue[ClaimedEmail] = asyncio.Queue()
            for r in account_rows:
                queue.put_nowait(r)
            workers = min(self._limit, caps.get(name, self._limit), len(account_rows))
            jobs.extend(self._worker(pool, queue, outcomes) for _ in range(workers))
        await asyncio.gather(*jobs)
        return outcomes.all

    async def _pool(self, name: str, load: SenderLoader) -> _AccountPool:
        sender = await asyncio.to_thread(load, name)
        pool = self._pools.get(name)
        if pool is not None and pool.sender.settings != sender.settings:
            # The account or its profile was edited: open connections carry the old settings.
            await self._close_pool(pool)
            pool = None
        if pool is None:
            pool = self._pools[name] = _AccountPool(sender, self._limit)
        else:
            pool.sender = sender  # the hold may have changed
        return pool

    async def _worker(
        self, pool: _AccountPool, queue: asyncio.Queue[ClaimedEmail], outcomes: _Outcomes
    ) -> None:
        async with pool.slots:
            hold_unknown = pool.sender.account.on_unknown_outcome is UnknownOutcome.HOLD
            try:
                transport = pool.idle.pop() if pool.idle else self._factory(pool.sender)
            except PostroomError as exc:
                error = TransientDeliveryError(f"account {pool.sender.account.name}: {exc}")
                while not queue.empty():
                    outcomes.append(self._decide(queue.get_nowait(), error))
                return
            healthy = True
            try:
                while not queue.empty():
                    row = queue.get_nowait()
                    now = utcnow()
                    if row.expires_at is not None and row.expires_at <= now:
                        # It waited for a connection past its time: never sent late.
                        outcomes.append(expired(row, now))
                        continue
                    if not row.open_recipients:
                        # Every recipient left is suppressed: nothing to send, and it ends.
                        outcomes.append(nobody_left(row, now))
                        continue
                    result = await self._send(transport, row, pool.sender.account)
                    if isinstance(result, CredentialsRejectedError) or (
                        isinstance(result, DeliveryError) and result.stage in CONNECTION_STAGES
                    ):
                        healthy = False
                    outcomes.append(self._decide(row, result, hold_unknown=hold_unknown))
                    if not healthy:
                        # The connection is unusable; the rest wait for their next turn
                        # rather than each hammering a server that just failed.
                        while not queue.empty():
                            outcomes.append(self._decide(queue.get_nowait(), result))
            finally:
                if healthy:
                    pool.idle.append(transport)
                else:
                    await transport.close()

    async def _send(
        self, transport: Transport, row: ClaimedEmail, transport_account: EmailAccount
    ) -> DeliveryReport | DeliveryError:
        envelope = Envelope(
            mail_from=envelope_sender(transport_account, row),
            recipients=tuple(row.open_recipients),
            message=row.message,
            dsn=DsnRequest(envid=row.bounce_token) if row.bounce_token else None,
        )
        try:
            return await transport.send(envelope)
        except DeliveryError as exc:
            log.info("outbox #%s %s: %s", row.id, type(exc).__name__, exc)
            return exc
        except Exception as exc:
            # A bug in a transport must not strand the batch in 'sending': the row is
            # recorded as waiting, with the error, and the agent carries on.
            log.exception("outbox #%s: unexpected error in the transport", row.id)
            return TransientDeliveryError(
                f"unexpected {type(exc).__name__} in the transport: {exc}", stage="connect"
            )

    def _decide(
        self,
        row: ClaimedEmail,
        result: DeliveryReport | DeliveryError,
        *,
        hold_unknown: bool = False,
    ) -> Outcome:
        return decide(row, result, policy=self._policy, now=utcnow(), hold_unknown=hold_unknown)

    async def close_accounts(self, names: Iterable[str]) -> None:
        """Close the idle connections of these accounts (their slots are given back)."""
        for name in names:
            pool = self._pools.pop(name, None)
            if pool is not None:
                await self._close_pool(pool)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await self._close_pool(pool)

    @staticmethod
    async def _close_pool(pool: _AccountPool) -> None:
        idle, pool.idle = pool.idle, []
        await asyncio.gather(*(t.close() for t in idle), return_exceptions=True)


def envelope_sender(account: EmailAccount, row: ClaimedEmail) -> str:
    """The row's envelope sender: its VERP address when the account has a bounce address."""
    if account.bounce_address and row.bounce_token:
        return verp_address(account.bounce_address, row.bounce_token)
    return row.mail_from


class _Outcomes:
    """A batch's outcomes, each also handed to the sink as soon as it is decided."""

    def __init__(self, sink: OutcomeSink | None) -> None:
        self.all: list[Outcome] = []
        self._sink = sink

    def append(self, outcome: Outcome) -> None:
        self.all.append(outcome)
        if self._sink is not None:
            self._sink(outcome)

    def extend(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            self.append(outcome)
