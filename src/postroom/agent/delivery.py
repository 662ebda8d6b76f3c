"""Delivering claimed rows: a connection pool per account and the per-row outcome."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from postroom.accounts.models import EmailAccount
from postroom.db.types import utcnow
from postroom.errors import DeliveryError, PostroomError, TransientDeliveryError
from postroom.outbox.models import ClaimedEmail, DeliveryReport, Outcome
from postroom.outbox.outcome import decide
from postroom.outbox.retry import RetryPolicy
from postroom.transports.base import Envelope, Transport, TransportFactory

log = logging.getLogger("postroom.agent")

AccountLoader = Callable[[str], EmailAccount]

# Failures at these stages concern the connection or the account, not one message.
CONNECTION_STAGES = frozenset({"account", "connect", "EHLO", "STARTTLS", "AUTH"})


class _AccountPool:
    """Idle connections of one account; at most ``limit`` open at once."""

    def __init__(self, account: EmailAccount, limit: int) -> None:
        self.account = account
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
        self, rows: Sequence[ClaimedEmail], load_account: AccountLoader
    ) -> list[Outcome]:
        """One attempt for every row; rows of one account share its connections."""
        by_account: dict[str, list[ClaimedEmail]] = defaultdict(list)
        for row in rows:
            by_account[row.account].append(row)
        outcomes: list[Outcome] = []
        jobs: list[Coroutine[Any, Any, None]] = []
        for name, account_rows in by_account.items():
            try:
                pool = await self._pool(name, load_account)
            except PostroomError as exc:
                error = TransientDeliveryError(f"account {name}: {exc}", stage="account")
                outcomes.extend(self._decide(r, error) for r in account_rows)
                continue
            queue: asyncio.Queue[ClaimedEmail] = asyncio.Queue()
            for r in account_rows:
                queue.put_nowait(r)
            workers = min(self._limit, len(account_rows))
            jobs.extend(self._worker(pool, queue, outcomes) for _ in range(workers))
        await asyncio.gather(*jobs)
        return outcomes

    async def _pool(self, name: str, load_account: AccountLoader) -> _AccountPool:
        account = await asyncio.to_thread(load_account, name)
        pool = self._pools.get(name)
        if pool is not None and pool.account != account:
            # The account was edited: its open connections carry the old settings.
            await self._close_pool(pool)
            pool = None
        if pool is None:
            pool = self._pools[name] = _AccountPool(account, self._limit)
        return pool

    async def _worker(
        self, pool: _AccountPool, queue: asyncio.Queue[ClaimedEmail], outcomes: list[Outcome]
    ) -> None:
        async with pool.slots:
            transport = pool.idle.pop() if pool.idle else self._factory(pool.account)
            healthy = True
            try:
                while not queue.empty():
                    row = queue.get_nowait()
                    result = await self._send(transport, row)
                    if isinstance(result, DeliveryError) and result.stage in CONNECTION_STAGES:
                        healthy = False
                    outcomes.append(self._decide(row, result))
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
        self, transport: Transport, row: ClaimedEmail
    ) -> DeliveryReport | DeliveryError:
        envelope = Envelope(
            mail_from=row.mail_from, recipients=tuple(row.open_recipients), message=row.message
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

    def _decide(self, row: ClaimedEmail, result: DeliveryReport | DeliveryError) -> Outcome:
        return decide(row, result, policy=self._policy, now=utcnow())

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await self._close_pool(pool)

    @staticmethod
    async def _close_pool(pool: _AccountPool) -> None:
        idle, pool.idle = pool.idle, []
        await asyncio.gather(*(t.close() for t in idle), return_exceptions=True)
