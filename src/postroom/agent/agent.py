"""The sender agent: claims due rows in batches under a lease, delivers, records.

Stops cleanly when its stop event is set (SIGTERM in the CLI): the batch in
flight is finished and recorded, then connections are closed with QUIT.

Database trouble is never fatal unless it cannot heal (see :mod:`postroom.agent.health`):
the agent says so in one line, shows itself ``degraded``, keeps the outcomes it could
not write, backs off, and carries on by itself when the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, Engine

from postroom.accounts.limits import Limits
from postroom.agent.beat import AgentRow
from postroom.agent.claiming import Claimer
from postroom.agent.delivery import Deliverer, SenderLoader
from postroom.agent.health import (
    AgentState,
    Backoff,
    Health,
    first_line,
    is_database_error,
    raise_if_fatal,
)
from postroom.agent.recorder import OutcomeRecorder, Pending
from postroom.agent.recording import AgentStats, Tally, record_outcomes
from postroom.db.types import utcnow
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.store import OutboxStore
from postroom.outbox.wakeup import Polling, Wakeup
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
    # Outcomes are written at most this long after they arrive, or once this many wait;
    # the window stretches up to record_max_window while writes are expensive.
    record_window: float = 0.02
    record_max_window: float = 0.25
    record_group: int = 32
    # Waits between tries while the database is away: doubling from first up to cap.
    db_retry_first: float = 0.5
    db_retry_cap: float = 30.0
    # How long a stopping agent keeps trying to write the outcomes it still holds.
    stop_write_timeout: float = 10.0


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
        wakeup: Wakeup | None = None,
        periodic: Callable[[], object] | None = None,
    ) -> None:
        self.id = agent_id or new_agent_id()
        # Work beside delivery, run with each heartbeat (the escalation of overdue reviews).
        self._periodic = periodic
        self._engine = engine
        self._load_sender = load_sender
        self._config = config
        self._policy = policy
        # Woken when rows are committed; polling every poll_interval stays the fallback.
        self._wakeup = wakeup or Polling()
        self._outbox = OutboxStore()
        self._claimer = Claimer(
            engine=engine,
            outbox=self._outbox,
            agent_id=self.id,
            config=config,
            limits_of=limits_of,
            hears_every_commit=lambda: self._wakeup.hears_every_commit,
        )
        self._row = AgentRow(
            engine=engine, outbox=self._outbox, agent_id=self.id, lease=config.lease_seconds
        )
        self._deliverer = Deliverer(
            factory=transport_factory,
            policy=policy,
            connections_per_account=config.connections_per_account,
        )
        self.stats = AgentStats()
        self._recorder = OutcomeRecorder(
            self._write,
            totals=self.stats,
            window=config.record_window,
            max_window=config.record_max_window,
            group=config.record_group,
        )
        # Built on a database that answered when it was opened: from here on, refusals
        # may be a failover's and are waited out (see health.fatal_reason).
        self.health = Health(started=True)
        self.paused = False
        self._idle_polls = False  # the last claim found nothing and no commit woke us
        self._quiet_for = config.poll_interval  # the next idle wait
        self._connections: dict[str, int] = {}  # this batch's connection slots per account
        self._ahead: list[ClaimedEmail] | None = None  # the next batch, claimed already
        # Only PostgreSQL writes and claims side by side; SQLite's one writer would make
        # them wait for each other (measured: no gain there).
        self._claims_ahead = engine.dialect.name == "postgresql"
        self._backoff = Backoff(first=config.db_retry_first, cap=config.db_retry_cap)
        self._outage_since: datetime | None = None  # when the database went away
        self._outage_started = 0.0  # the same, on the monotonic clock
        self._db_back = asyncio.Event()  # set by a heartbeat that got through
        # Leases are renewed with the heartbeat, so it must beat well inside a lease.
        self.beat_interval = min(config.heartbeat_interval, config.lease_seconds / 3)

    async def run(
        self, *, stop: asyncio.Event | None = None, until_idle: bool = False
    ) -> AgentStats:
        """Work until ``stop`` is set, or with ``until_idle`` until nothing is due.

        Raises :class:`~postroom.errors.DatabaseFatalError` only for a database that
        cannot heal (damaged, another schema version, refused at start-up).
        """
        stop = stop or asyncio.Event()
        if not await self._until_registered(stop):
            return self.stats
        finished = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(finished))
        await self._wakeup.start()
        try:
            while not stop.is_set():
                try:
                    await self._catch_up()
                    rows, self._ahead = self._ahead, None
                    if rows is None:
                        rows = await asyncio.to_thread(self._claim)
                except Exception as exc:
                    await self._database_trouble(exc, stop)
                    continue
                self._working()
                if not rows:
                    if until_idle:
                        break
                    # Woken by a commit: claim at once; a poll's timeout: read first.
                    self._idle_polls = not await self._idle(stop)
                    continue
                self._idle_polls = False
                try:
                    await self._process(rows, stop=stop)
                except Exception as exc:
                    await self._database_trouble(exc, stop)
        finally:
            await self._give_back_ahead()
            await self._wakeup.close()
            await self._wind_down(beat, finished)
        return self.stats

    async def _idle(self, stop: asyncio.Event) -> bool:
        """Wait for committed rows, ``stop`` or the quiet time; True when woken."""
        interval = self._quiet_for
        woken = asyncio.ensure_future(self._wakeup.wait(interval))
        waits = [asyncio.ensure_future(stop.wait()), woken]
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return woken.done() and not woken.cancelled() and woken.result()

    async def _until_registered(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self._row.register)
            except Exception as exc:
                await self._database_trouble(exc, stop)
                continue
            self._working()
            return True
        return False

    async def _database_trouble(self, exc: Exception, stop: asyncio.Event) -> None:
        """Note a database error and wait before the next try (anything else is raised)."""
        if not is_database_error(exc):
            raise exc
        raise_if_fatal(exc, started=self.health.started)
        self._note_database_error(exc)
        delay = self._backoff.next_delay()
        self._db_back.clear()
        # A heartbeat that gets through cuts the wait short: after a long outage the
        # agent resumes within a beat, not a whole backoff step later.
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._db_back.wait())]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _note_database_error(self, exc: BaseException) -> None:
        reason = f"database unavailable: {first_line(exc)}"
        if self._outage_since is None:
            self._outage_since, self._outage_started = utcnow(), time.monotonic()
        if self.health.degrade(reason):
            # One line per spell of trouble; the traceback only for those who ask.
            log.warning("agent %s degraded: %s; retrying with backoff", self.id, reason)
        else:
            log.debug("agent %s: %s (%d in a row)", self.id, reason, self.health.db_errors)
        log.debug("database error", exc_info=exc)
        if self.health.db_errors == 1:
            # Broken pooled connections are replaced rather than tried again one by one.
            self._engine.dispose()

    def _working(self) -> None:
        if self.health.recover():
            took = time.monotonic() - self._outage_started
            log.warning("agent %s: database answers again after %.1f s; working", self.id, took)
        self._backoff.reset()

    async def _catch_up(self) -> None:
        """After an outage: fresh leases for what lapsed meanwhile, then held outcomes."""
        if self._outage_since is not None:
            since = self._outage_since
            await asyncio.to_thread(self._extend_lapsed, since)
            self._outage_since = None
        if self._recorder.pending:
            held = self._recorder.pending
            await self._recorder.flush()
            log.info("agent %s: %d outcomes kept through the outage written", self.id, held)

    def _extend_lapsed(self, since: datetime) -> None:
        with self._engine.begin() as conn:
            extended = self._outbox.extend_lapsed(
                conn, since=since, lease=self._config.lease_seconds
            )
        if extended:
            log.info("%d leases that ran out while the database was away renewed", extended)

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
        try:
            await asyncio.shield(self._write_before_stopping())
        except asyncio.CancelledError:
            cancelled = True
        if self.health.state is not AgentState.STOPPED:
            self.health.stop()
        try:
            await asyncio.to_thread(self._row.beat, self.health, self.stats)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("agent %s stopped; could not say so: %s", self.id, first_line(exc))
        if cancelled:
            raise asyncio.CancelledError

    async def _write_before_stopping(self) -> None:
        deadline = time.monotonic() + self._config.stop_write_timeout
        while self._recorder.pending:
            try:
                await self._recorder.flush()
            except Exception as exc:
                if not is_database_error(exc) or time.monotonic() >= deadline:
                    log.warning(
                        "agent %s stopped with %d outcomes unwritten (%s): those emails may "
                        "be sent again once their lease runs out",
                        self.id,
                        self._recorder.pending,
                        first_line(exc),
                    )
                    break
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    async def _process(
        self, rows: list[ClaimedEmail], *, stop: asyncio.Event | None = None
    ) -> None:
        """Deliver a batch and write its outcomes; unless ``stop`` is missing or set by
        then, the next batch is claimed meanwhile (kept in ``_ahead``)."""
        limited = dict(self._connections)
        claimed = {r.id: r for r in rows}
        before = replace(self.stats)
        try:
            await self._deliverer.deliver(
                rows,
                self._load_sender,
                connections=limited,
                on_outcome=lambda outcome: self._recorder.add(outcome, claimed[outcome.id]),
            )
        finally:
            if limited:
                # Connections count against the account's limit while open: an agent
                # between batches holds none, so other agents may have them.
                await self._deliverer.close_accounts(limited)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._claimer.release_slots)  # else they lapse
        if self._claims_ahead and stop is not None and not stop.is_set() and not self._outage_since:
            await self._flush_and_claim()
        else:
            await self._recorder.flush()
        self.stats.batches += 1
        after = self.stats
        log.info(
            "batch of %d: %d sent, %d failed, %d to retry, %d held",
            len(rows),
            after.sent - before.sent,
            after.failed - before.failed,
            after.retried - before.retried,
            after.held - before.held,
        )

    async def _flush_and_claim(self) -> None:
        """Write the batch's last outcomes while the next batch is claimed.

        Both wait on the database (a commit each); side by side, the agent waits once.
        The rows claimed are the next ones the loop works on. They are dropped unsent
        if the write fails: they come back when their lease lapses, never twice.
        """
        claim = asyncio.ensure_future(asyncio.to_thread(self._claim))
        try:
            await self._recorder.flush()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(claim)  # a thread is not stopped by cancelling
            raise
        try:
            # None for nothing: rows this write made due again (a retry without delay)
            # were not due when the claim looked, so the loop claims once more itself.
            self._ahead = await asyncio.shield(claim) or None
        except Exception as exc:
            # The loop's own claim meets the same trouble and deals with it.
            log.debug("agent %s: claim beside the write failed: %s", self.id, first_line(exc))

    async def _give_back_ahead(self) -> None:
        """Rows claimed ahead of a stop go back to the queue, their attempt uncounted."""
        rows, self._ahead = self._ahead, None
        if not rows:
            return
        try:
            await asyncio.to_thread(self._claimer.release, [r.id for r in rows])
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning(
                "agent %s: %d emails claimed but not sent wait for their lease to lapse: %s",
                self.id,
                len(rows),
                first_line(exc),
            )

    def _write(self, pending: Sequence[Pending]) -> Tally:
        return record_outcomes(
            self._engine,
            self._outbox,
            [outcome for outcome, _ in pending],
            {row.id: row for _, row in pending},
            owner=self.id,
            hold_delay=self._policy.delay,
        )

    def _claim(self) -> list[ClaimedEmail]:
        """Claim a batch (after a read, when idle) and note what it says about waiting."""
        claim = self._claimer.claim(probe=self._idle_polls)
        self.paused, self._quiet_for = claim.paused, claim.quiet_for
        if claim.connections is not None:
            self._connections = claim.connections
        return claim.rows

    async def _heartbeat(self, finished: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.beat_interval)
            if finished.is_set():
                return
            try:
                await asyncio.to_thread(self._row.beat, self.health, self.stats)
            except Exception as exc:  # a missed beat must not stop delivery
                if is_database_error(exc):
                    self._note_database_error(exc)
                else:
                    log.error("agent %s: heartbeat failed: %s", self.id, exc)
                    log.debug("heartbeat failure", exc_info=exc)
            else:
                if self.health.state is AgentState.DEGRADED:
                    self._db_back.set()
                await self._run_periodic()

    async def _run_periodic(self) -> None:
        if self._periodic is None:
            return
        try:
            await asyncio.to_thread(self._periodic)
        except Exception as exc:  # like a missed beat: it is tried again with the next one
            if is_database_error(exc):
                self._note_database_error(exc)
            else:
                log.error("agent %s: periodic work failed: %s", self.id, exc)
                log.debug("periodic work failure", exc_info=exc)
