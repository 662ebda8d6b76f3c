"""The webhook dispatcher: a background task of every agent that delivers due events.

It claims due deliveries under a lease (as the sender agent claims emails, so any number
of agents share the work and none sends a delivery another holds), a batch at a time:
as many as its ``concurrency`` slots can send within the lease, each endpoint read once
per batch. The slots take them from a queue, check the URL again (with DNS) and POST the
signed event, with at most ``concurrency`` requests in flight; a delivery whose lease
would no longer outlast its request is given back unsent. Outcomes are written together,
all that finished since the last write in one transaction, which also claims the next
batch: a database round per batch, not per delivery. It is its own asyncio task and talks
to the database from a thread: a slow endpoint never holds up email delivery.

Database trouble is said once, shown on the health check, and waited out with backoff
(outcomes not written yet are kept and written once it answers); on stop, deliveries
claimed but not finished are given back, due again at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from postroom.agent.health import Backoff, Health, first_line, is_database_error
from postroom.db.engine import reading
from postroom.errors import NotFoundError, PostroomError
from postroom.webhooks.attempts import EndpointNow, UrlChecks, attempt
from postroom.webhooks.backoff import RetryPolicy
from postroom.webhooks.deliveries import ClaimedDelivery, DeliveryOutcome, DeliveryStore
from postroom.webhooks.endpoints import WebhookEndpointStore
from postroom.webhooks.models import DeliveryStatus
from postroom.webhooks.sender import WebhookSender
from postroom.webhooks.urls import Lookup

if TYPE_CHECKING:
    from postroom.app import Postroom

log = logging.getLogger("postroom.webhooks")

STOP_GRACE = 5.0  # beyond the request timeout, for requests in flight when stopping
LEASE_MARGIN = 30.0  # a lease outlasts the request timeout by this much at least
SEND_MARGIN = 15.0  # a request starts only while its lease outlasts it by this much
MAX_ROUNDS = 4  # a batch holds at most this many requests per slot
WRITE_LINGER = 0.05  # an outcome waits this long at most for others to be written with


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How a dispatcher paces its work and where it may send."""

    concurrency: int = 4
    poll_interval: float = 1.0
    lease_seconds: float = 60.0
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(5.0, 3600.0, 24.0))
    allowed_hosts: frozenset[str] = frozenset()
    send_margin: float = SEND_MARGIN

    @property
    def lease(self) -> float:
        # A request may take the whole timeout; the lease must not lapse under it.
        return max(self.lease_seconds, self.timeout + LEASE_MARGIN)

    @property
    def send_within(self) -> float:
        """Seconds after a claim in which its deliveries may still start."""
        return self.lease - self.timeout - self.send_margin

    @property
    def batch(self) -> int:
        """How many to hold at once: every slot sends its share one after another, each
        request taking at most the timeout, and the last must start within the lease."""
        rounds = int(self.send_within // self.timeout) + 1
        return self.concurrency * min(MAX_ROUNDS, max(1, rounds))


@dataclass(slots=True)
class DispatchStats:
    """What one run of a dispatcher did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    given_back: int = 0  # claimed, not sent: the lease would not have outlasted the request


@dataclass(frozen=True, slots=True)
class _Job:
    claimed: ClaimedDelivery
    endpoint: EndpointNow
    start_by: float  # monotonic; later, the lease could lapse before the outcome is written


@dataclass(slots=True)
class _Claim:
    """What one database round claimed and which of the written outcomes kept their lease."""

    jobs: list[tuple[ClaimedDelivery, EndpointNow]]
    lost: list[int]


class WebhookDispatcher:
    """Delivers webhook events until stopped; ``await run(stop=...)``."""

    def __init__(
        self,
        *,
        engine: Engine,
        deliveries: DeliveryStore,
        endpoints: WebhookEndpointStore,
        owner: str,
        config: DispatchConfig,
        sender: WebhookSender | None = None,
        lookup: Lookup | None = None,
        retry_first: float = 1.0,
        retry_cap: float = 60.0,
    ) -> None:
        self.id = owner
        self._engine = engine
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._config = config
        self._sender = sender or WebhookSender(
            timeout=config.timeout, connections=config.concurrency
        )
        self.urls = UrlChecks(allowed=config.allowed_hosts)
        self.urls.lookup = lookup
        self.health = Health(started=True)
        self.stats = DispatchStats()
        self._db_backoff = Backoff(first=retry_first, cap=retry_cap)
        self._holding: set[int] = set()  # claimed, outcome not written yet
        self._done: list[DeliveryOutcome] = []  # sent, outcome not written yet
        self._first_done = 0.0  # monotonic: when the oldest of them came
        self._give_back: list[int] = []  # claimed, not sent: their lease is too short now
        self._busy = 0  # requests in flight
        self._said: dict[str, str] = {}  # each endpoint's trouble, said once while it lasts

    async def run(self, *, stop: asyncio.Event, until_idle: bool = False) -> DispatchStats:
        """Deliver until ``stop`` is set (or, ``until_idle``, until nothing is due)."""
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        wake = asyncio.Event()  # a request ended: its outcome waits, a slot is free
        slots = [
            asyncio.create_task(self._slot(jobs, wake), name=f"webhook slot {n}")
            for n in range(self._config.concurrency)
        ]
        stopping = asyncio.create_task(stop.wait(), name="webhooks stop")
        claim_after = 0.0  # monotonic: nothing more was due, look again from then
        try:
            while not stop.is_set():
                wake.clear()
                now = time.monotonic()
                want = self._wanted(jobs) if now >= claim_after else 0
                write_by = self._write_by()
                if not (want or self._give_back or write_by <= now):
                    pause = min(claim_after, write_by) - now
                    if pause <= 0 or pause == math.inf:
                        pause = self._config.poll_interval
                    woken = asyncio.create_task(wake.wait(), name="webhooks wake")
                    await asyncio.wait(
                        {stopping, woken}, timeout=pause, return_when="FIRST_COMPLETED"
                    )
                    woken.cancel()
                    continue
                try:
                    got = await self._round(want, jobs)
                    self.database_answers()
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    self.database_trouble(exc)
                    if until_idle and self._idle(jobs):
                        break
                    await asyncio.wait({stopping}, timeout=self._db_backoff.next_delay())
                    continue
                if got < want:
                    claim_after = time.monotonic() + self._config.poll_interval
                    if until_idle and got == 0 and self._idle(jobs):
                        break
        finally:
            stopping.cancel()
            await self._finish(jobs, slots)
        return self.stats

    def _wanted(self, jobs: asyncio.Queue[_Job | None]) -> int:
        """How many to claim: none while a round of work still waits, else a batch's room."""
        waiting = jobs.qsize()
        if waiting >= max(self._config.concurrency, self._config.batch // 2):
            return 0
        return max(0, self._config.batch - waiting - self._busy)

    def _write_by(self) -> float:
        """When the outcomes waiting are to be written: soon, but a few at a time."""
        if not self._done:
            return math.inf
        if len(self._done) >= max(1, self._config.batch // 2):
            return 0.0
        return self._first_done + WRITE_LINGER

    def _idle(self, jobs: asyncio.Queue[_Job | None]) -> bool:
        return jobs.empty() and not self._busy and not self._done and not self._give_back

    # --- the slots -----------------------------------------------------------------------

    async def _slot(self, jobs: asyncio.Queue[_Job | None], wake: asyncio.Event) -> None:
        while (job := await jobs.get()) is not None:
            self._busy += 1
            try:
                await self._deliver(job)
            finally:
                self._busy -= 1
                wake.set()

    async def _deliver(self, job: _Job) -> None:
        claimed = job.claimed
        if time.monotonic() > job.start_by:
            # Its lease might lapse before the outcome is written, and another agent
            # might then send it too: given back unsent instead.
            self._give_back.append(claimed.id)
            self.stats.given_back += 1
            return
        try:
            outcome = await attempt(
                claimed,
                job.endpoint,
                sender=self._sender,
                urls=self.urls,
                retry=self._config.retry,
            )
        except Exception:  # a bug: its traceback is what its fix needs
            log.exception("webhook delivery %s: unexpected error", claimed.id)
            self._holding.discard(claimed.id)  # nothing written: the lease lapses
            return
        self._count(claimed, outcome)
        if not self._done:
            self._first_done = time.monotonic()
        self._done.append(outcome)

    def _count(self, claimed: ClaimedDelivery, outcome: DeliveryOutcome) -> None:
        name = claimed.endpoint
        if outcome.status is DeliveryStatus.DELIVERED:
            self.stats.delivered += 1
            if self._said.pop(name, None) is not None:
                log.warning("webhook %s: delivering again", name)
            return
        if outcome.status is DeliveryStatus.FAILED:
            self.stats.failed += 1
            log.warning(
                "webhook %s: %s %s failed: %s", name, claimed.event_type, claimed.event_id,
                outcome.error,
            )  # fmt: skip
            return
        self.stats.retried += 1
        if self._said.get(name) != outcome.error:
            self._said[name] = outcome.error or ""
            log.warning("webhook %s: %s; retrying with backoff", name, outcome.error)

    # --- the database --------------------------------------------------------------------

    async def _round(self, want: int, jobs: asyncio.Queue[_Job | None] | None) -> int:
        """Write what finished, give back what was not sent, claim up to ``want``: one
        transaction. Returns how many were claimed; on an error nothing is lost."""
        done, self._done = self._done, []
        back, self._give_back = self._give_back, []
        first_done = self._first_done
        if not (done or back or want):
            return 0
        began = time.monotonic()
        try:
            result = await asyncio.to_thread(self._transaction, done, back, want)
        except BaseException:
            if done:
                self._first_done = first_done
            self._done[:0] = done
            self._give_back[:0] = back
            raise
        self._holding.difference_update(o.id for o in done)
        self._holding.difference_update(back)
        for lost in result.lost:
            log.info("webhook delivery %s: the lease had passed to another agent", lost)
        start_by = began + self._config.send_within
        for claimed, found in result.jobs:
            self._holding.add(claimed.id)
            if jobs is not None:
                jobs.put_nowait(_Job(claimed, found, start_by))
        return len(result.jobs)

    def _transaction(self, done: Sequence[DeliveryOutcome], back: list[int], want: int) -> _Claim:
        if not (done or back):
            # Only claiming: an idle round reads first and takes the write lock for work.
            with reading(self._engine) as conn:
                if not self._deliveries.anything_due(conn):
                    return _Claim(jobs=[], lost=[])
        with self._engine.begin() as conn:
            kept = self._deliveries.record_many(conn, done, owner=self.id)
            self._deliveries.release(conn, back, owner=self.id)
            claimed: list[ClaimedDelivery] = []
            if want:
                claimed = self._deliveries.claim(
                    conn, owner=self.id, limit=want, lease=self._config.lease
                )
            found = {name: self._endpoint(conn, name) for name in {c.endpoint for c in claimed}}
        return _Claim(
            jobs=[(c, found[c.endpoint]) for c in claimed],
            lost=[o.id for o in done if o.id not in kept],
        )

    def _endpoint(self, conn: Connection, name: str) -> EndpointNow:
        try:
            return EndpointNow(self._endpoints.get(conn, name))
        except NotFoundError:
            return EndpointNow(None)
        except PostroomError as exc:  # its secret cannot be decrypted with this key
            return EndpointNow(None, str(exc))

    async def _finish(
        self, jobs: asyncio.Queue[_Job | None], slots: list[asyncio.Task[None]]
    ) -> None:
        """Let requests in flight end, then write their outcomes and give back the rest."""
        while not jobs.empty():
            jobs.get_nowait()  # not started: still held, given back below
        for _ in slots:
            jobs.put_nowait(None)
        _, late = await asyncio.wait(slots, timeout=self._config.timeout + STOP_GRACE)
        for task in late:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        await self._sender.close()
        written = {o.id for o in self._done}
        self._give_back.extend(sorted(self._holding - written - set(self._give_back)))
        if not (self._done or self._give_back):
            return
        try:
            await self._round(0, None)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning(
                "webhooks: could not write %d outcomes nor give back deliveries %s: %s",
                len(self._done), sorted(self._holding), first_line(exc),
            )  # fmt: skip

    def database_trouble(self, exc: BaseException) -> None:
        reason = f"database unavailable: {first_line(exc)}"
        if self.health.degrade(reason):
            log.warning("webhooks degraded: %s; retrying with backoff", reason)
        log.debug("database error", exc_info=exc)

    def database_answers(self) -> None:
        if self.health.recover():
            log.warning("webhooks: the database answers again; delivering")
        self._db_backoff.reset()


def dispatcher_for(postroom: Postroom, agent_id: str | None = None) -> WebhookDispatcher:
    """A dispatcher on ``postroom``'s database with its settings, for one agent."""
    from postroom.agent.agent import new_agent_id  # noqa: PLC0415 - the agent loads late

    s = postroom.settings
    return WebhookDispatcher(
        engine=postroom.engine,
        deliveries=postroom.delivery_store,
        endpoints=postroom.webhook_store,
        owner=agent_id or new_agent_id(),
        config=DispatchConfig(
            concurrency=s.webhook_concurrency,
            poll_interval=s.poll_interval,
            lease_seconds=s.lease_seconds,
            timeout=s.webhook_timeout,
            retry=RetryPolicy(
                base=s.webhook_backoff_base,
                cap=s.webhook_backoff_max,
                window_hours=s.webhook_retry_hours,
            ),
            allowed_hosts=s.endpoint_hosts,
        ),
    )
