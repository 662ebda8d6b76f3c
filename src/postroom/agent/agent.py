"""The sender agent: claims due rows in batches under a lease, delivers, records.

Stops cleanly when its stop event is set (SIGTERM in the CLI): the batch in
flight is finished and recorded, then connections are closed with QUIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, update

from postroom.accounts.holds import HoldStore
from postroom.accounts.limits import Limits
from postroom.agent.delivery import Deliverer, SenderLoader
from postroom.agent.recording import record_outcomes
from postroom.agent.registry import is_paused
from postroom.agent.throttle import admit, release_slots, renew_slots
from postroom.cases.store import add_history
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import PostroomError
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.store import OutboxStore
from postroom.transports.base import TransportFactory

log = logging.getLogger("postroom.agent")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How an agent claims and paces its work."""

    batch_size: int = 200
    poll_interval: float = 1.0
    lease_seconds: float = 60.0
    heartbeat_interval: float = 5.0
    connections_per_account: int = 4


@dataclass(slots=True)
class AgentStats:
    """What an agent did while it ran."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    held: int = 0
    batches: int = 0


def new_agent_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class SenderAgent:
    """Delivers the outbox; run any number of them against one database."""

    def __init__(
        self,
        *,
        engine: Engine,
        load_sender: SenderLoader,
        transport_factory: TransportFactory,
        policy: RetryPolicy,
        config: AgentConfig,
        agent_id: str | None = None,
        limits_of: Callable[[Connection, str], Limits] | None = None,
    ) -> None:
        self.id = agent_id or new_agent_id()
        # Read in the claim's own transaction: on SQLite a second connection would wait
        # for the write lock that transaction holds.
        self._account_limits = limits_of or (lambda conn, name: Limits())
        self._engine = engine
        self._load_sender = load_sender
        self._config = config
        self._policy = policy
        self._outbox = OutboxStore()
        self._deliverer = Deliverer(
            factory=transport_factory,
            policy=policy,
            connections_per_account=config.connections_per_account,
        )
        self.stats = AgentStats()
        self.paused = False
        self._connections: dict[str, int] = {}  # this batch's connection slots per account
        # Leases are renewed with the heartbeat, so it must beat well inside a lease.
        self.beat_interval = min(config.heartbeat_interval, config.lease_seconds / 3)

    async def run(
        self, *, stop: asyncio.Event | None = None, until_idle: bool = False
    ) -> AgentStats:
        """Work until ``stop`` is set, or with ``until_idle`` until nothing is due."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(self._register)
        finished = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(finished))
        try:
            while not stop.is_set():
                rows = await asyncio.to_thread(self._claim)
                if not rows:
                    if until_idle:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._config.poll_interval)
                    continue
                await self._process(rows)
        finally:
            await self._wind_down(beat, finished)
        return self.stats

    async def _wind_down(self, beat: asyncio.Task[None], finished: asyncio.Event) -> None:
        """Let a beat in flight finish, close connections, then write 'stopped' last.

        The beat is never cancelled: it runs in a thread that cancelling would not stop,
        and one committed after 'stopped' would show a stopped agent as running. Being
        cancelled meanwhile (a caller's timeout) still ends with 'stopped', then re-raises.
        """
        finished.set()
        cancelled = False
        while not beat.done():
            try:
                await asyncio.shield(beat)
            except asyncio.CancelledError:
                cancelled = True
        await self._deliverer.close()
        await asyncio.to_thread(self._beat, "stopped")
        if cancelled:
            raise asyncio.CancelledError

    async def _process(self, rows: list[ClaimedEmail]) -> None:
        limited = dict(self._connections)
        try:
            outcomes = await self._deliverer.deliver(rows, self._load_sender, connections=limited)
        finally:
            if limited:
                # Connections count against the account's limit while open: an agent
                # between batches holds none, so other agents may have them.
                await self._deliverer.close_accounts(limited)
                await asyncio.to_thread(self._release_slots)
        claimed = {r.id: r for r in rows}
        tally = await asyncio.to_thread(
            record_outcomes,
            self._engine,
            self._outbox,
            outcomes,
            claimed,
            owner=self.id,
            hold_delay=self._policy.delay,
        )
        self.stats.sent += tally.sent
        self.stats.failed += tally.failed
        self.stats.retried += tally.retried
        self.stats.held += tally.held
        self.stats.batches += 1
        log.info(
            "batch of %d: %d sent, %d failed, %d to retry, %d held",
            len(rows),
            tally.sent,
            tally.failed,
            tally.retried,
            tally.held,
        )

    def _claim(self) -> list[ClaimedEmail]:
        """Claim a batch and apply account limits to it, in one transaction."""
        with self._engine.begin() as conn:
            # Read in the claim's transaction: once a pause is committed, nothing more
            # is claimed (what is in flight finishes).
            self.paused = is_paused(conn, self.id)
            if self.paused:
                return []
            # Cheap (a partial index holds only waiting rows with an expiry), and done
            # here so that an expired email shows as such as soon as its turn would come.
            self._expire(conn)
            rows = self._outbox.claim(
                conn,
                owner=self.id,
                limit=self._config.batch_size,
                lease=self._config.lease_seconds,
            )
            admission = admit(
                conn,
                rows,
                outbox=self._outbox,
                limits_of=lambda name: self._limits_of(conn, name),
                owner=self.id,
                connections_per_account=self._config.connections_per_account,
                lease=self._config.lease_seconds,
                now=utcnow(),
            )
            self._connections = admission.connections
            return admission.rows

    def _release_slots(self) -> None:
        with self._engine.begin() as conn:
            release_slots(conn, owner=self.id)

    def _limits_of(self, conn: Connection, account: str) -> Limits:
        try:
            return self._account_limits(conn, account)
        except PostroomError:
            return Limits()  # the deliverer reports what is wrong with the account

    async def _heartbeat(self, finished: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.beat_interval)
            if finished.is_set():
                return
            try:
                await asyncio.to_thread(self._beat, "running")
            except Exception:  # a missed beat must not stop delivery
                log.exception("heartbeat failed")

    def _register(self) -> None:
        now = utcnow()
        with self._engine.begin() as conn:
            conn.execute(
                insert(tables.agents).values(
                    id=self.id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    state="running",
                    started_at=now,
                    last_beat_at=now,
                    sent=0,
                    failed=0,
                )
            )

    def _beat(self, state: str) -> None:
        now = utcnow()
        with self._engine.begin() as conn:
            conn.execute(
                update(tables.agents)
                .where(tables.agents.c.id == self.id)
                .values(
                    state=state,
                    last_beat_at=now,
                    sent=self.stats.sent,
                    failed=self.stats.failed,
                    **({"stopped_at": now} if state == "stopped" else {}),
                )
            )
            if state == "stopped":
                release_slots(conn, owner=self.id)
            if state == "running":
                self._outbox.renew(conn, owner=self.id, lease=self._config.lease_seconds)
                renew_slots(conn, owner=self.id, lease=self._config.lease_seconds, now=now)
                self._recheck_holds(conn)

    def _expire(self, conn: Connection) -> None:
        for outbox_id, case_id, subject in self._outbox.expire_due(conn):
            log.info("outbox #%s expired before it could be sent", outbox_id)
            if case_id is not None:
                add_history(
                    conn,
                    case_id,
                    actor="agent",
                    action="email-expired",
                    detail=f"outbox #{outbox_id} '{subject}' not sent: it expired first",
                )

    def _recheck_holds(self, conn: Connection) -> None:
        # A held account's emails are queued again when its check is due, so that the
        # next attempt finds out whether the credentials work now.
        orphans = self._outbox.release_orphans(conn)
        if orphans:
            log.info("%d emails held for accounts no longer held: queued again", orphans)
        for account in HoldStore().due(conn, utcnow()):
            released = self._outbox.release_held(conn, account)
            if released:
                log.info(
                    "account %s: checking its credentials again with %d emails", account, released
                )
