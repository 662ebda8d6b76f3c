"""The webhook dispatcher: a background task of every agent that delivers due events.

It claims due deliveries under a lease (as the sender agent claims emails, so any number
of agents share the work and none sends a delivery another holds), checks the endpoint's
URL again with DNS, POSTs the signed event with at most ``concurrency`` requests in
flight, and writes each outcome in its own short transaction. It is its own asyncio task
and talks to the database from threads: a slow endpoint never holds up email delivery.

Database trouble is said once, shown on the health check, and waited out with backoff;
on stop, deliveries claimed but not finished are given back, due again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from postroom.agent.health import Backoff, Health, first_line, is_database_error
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, NotFoundError, PostroomError
from postroom.webhooks.backoff import RetryPolicy, next_attempt
from postroom.webhooks.deliveries import ClaimedDelivery, DeliveryOutcome, DeliveryStore
from postroom.webhooks.endpoints import WebhookEndpoint, WebhookEndpointStore
from postroom.webhooks.models import DeliveryStatus
from postroom.webhooks.sender import SendResult, WebhookSender
from postroom.webhooks.urls import Lookup, check_webhook_url

if TYPE_CHECKING:
    from postroom.app import Postroom

log = logging.getLogger("postroom.webhooks")

STOP_GRACE = 5.0  # beyond the request timeout, for requests in flight when stopping
LEASE_MARGIN = 30.0  # a lease outlasts the request timeout by this much at least


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How a dispatcher paces its work and where it may send."""

    concurrency: int = 4
    poll_interval: float = 1.0
    lease_seconds: float = 60.0
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(5.0, 3600.0, 24.0))
    allowed_hosts: frozenset[str] = frozenset()

    @property
    def lease(self) -> float:
        # A request may take the whole timeout; the lease must not lapse under it.
        return max(self.lease_seconds, self.timeout + LEASE_MARGIN)


@dataclass(slots=True)
class DispatchStats:
    """What one run of a dispatcher did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0


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
        self._sender = sender or WebhookSender(timeout=config.timeout)
        self._lookup = lookup
        self.health = Health(started=True)
        self.stats = DispatchStats()
        self._db_backoff = Backoff(first=retry_first, cap=retry_cap)
        self._holding: set[int] = set()  # claimed, outcome not written yet
        self._unwritten: list[DeliveryOutcome] = []  # the database did not take them
        self._said: dict[str, str] = {}  # each endpoint's trouble, said once while it lasts

    async def run(self, *, stop: asyncio.Event, until_idle: bool = False) -> DispatchStats:
        """Deliver until ``stop`` is set (or, ``until_idle``, until nothing is due)."""
        inflight: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(stop.wait(), name="webhooks stop")
        try:
            while not stop.is_set():
                delay = self._config.poll_interval
                free = self._config.concurrency - len(inflight)
                claimed: list[ClaimedDelivery] = []
                try:
                    await self._write_unwritten()
                    if free > 0:
                        claimed = await asyncio.to_thread(self._claim, free)
                    self.database_answers()
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    self.database_trouble(exc)
                    delay = self._db_backoff.next_delay()
                for delivery in claimed:
                    task = asyncio.create_task(
                        self._deliver(delivery), name=f"webhook delivery {delivery.id}"
                    )
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                if until_idle and not claimed and not inflight and not self._unwritten:
                    break
                if claimed and len(claimed) == free:
                    # Every slot is taken: wait for one to free up (or the stop).
                    await asyncio.wait({stopping, *inflight}, return_when="FIRST_COMPLETED")
                elif not claimed:
                    waits = {stopping, *inflight} if until_idle else {stopping}
                    await asyncio.wait(waits, timeout=delay, return_when="FIRST_COMPLETED")
        finally:
            stopping.cancel()
            await self._finish(inflight)
        return self.stats

    # --- one delivery --------------------------------------------------------------------

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        try:
            outcome = await self._attempt(claimed)
        except Exception as exc:
            # Nothing written: the lease lapses and the delivery comes back.
            if is_database_error(exc):
                self.database_trouble(exc)
            else:  # a bug: its traceback is what its fix needs
                log.exception("webhook delivery %s: unexpected error", claimed.id)
            self._holding.discard(claimed.id)
            return
        self._count(claimed, outcome)
        try:
            await asyncio.to_thread(self._write, outcome)
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("webhook delivery %s: unexpected error", claimed.id)
                self._holding.discard(claimed.id)
                return
            self.database_trouble(exc)
            self._unwritten.append(outcome)  # written once the database answers

    async def _attempt(self, claimed: ClaimedDelivery) -> DeliveryOutcome:
        name = claimed.endpoint
        try:
            endpoint = await asyncio.to_thread(self._endpoint, name)
        except PostroomError as exc:  # its secret cannot be decrypted with this key
            return self._again(claimed, SendResult(None, str(exc), 0))
        if endpoint is None:
            return self._end(claimed, f"endpoint {name} was deleted")
        if not endpoint.enabled:
            return self._end(claimed, f"endpoint {name} is disabled")
        try:
            await asyncio.to_thread(
                check_webhook_url,
                endpoint.url,
                allowed=self._config.allowed_hosts,
                resolve=True,
                lookup=self._lookup,
            )
        except ConfigurationError as exc:
            return self._end(claimed, str(exc))
        except PostroomError as exc:  # the name does not resolve (now)
            return self._again(claimed, SendResult(None, str(exc), 0))
        result = await self._sender.send(
            endpoint.url,
            secret=endpoint.secret.get_secret_value(),
            event_id=claimed.event_id,
            payload=claimed.payload,
        )
        if result.delivered:
            return DeliveryOutcome(
                id=claimed.id,
                status=DeliveryStatus.DELIVERED,
                at=utcnow(),
                duration_ms=result.duration_ms,
                status_code=result.status_code,
            )
        if result.status_code == 410:  # Gone: the endpoint asks for no more
            return self._end(claimed, "HTTP 410 Gone: the endpoint wants no more events", result)
        return self._again(claimed, result)

    def _again(self, claimed: ClaimedDelivery, result: SendResult) -> DeliveryOutcome:
        """Try again after a backoff, or end failed when that would pass the window."""
        now = utcnow()
        error = result.error or "no answer"
        at = next_attempt(
            attempts=claimed.attempts,
            window_start=claimed.window_start,
            now=now,
            policy=self._config.retry,
        )
        if at is None:
            hours = self._config.retry.window_hours
            return self._end(
                claimed,
                f"{error}; gave up after {claimed.attempts} attempts in {hours:g} h",
                result,
            )
        return DeliveryOutcome(
            id=claimed.id,
            status=DeliveryStatus.PENDING,
            at=now,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=error,
            next_attempt_at=at,
        )

    @staticmethod
    def _end(
        claimed: ClaimedDelivery, error: str, result: SendResult | None = None
    ) -> DeliveryOutcome:
        return DeliveryOutcome(
            id=claimed.id,
            status=DeliveryStatus.FAILED,
            at=utcnow(),
            duration_ms=result.duration_ms if result else 0,
            status_code=result.status_code if result else None,
            error=error,
        )

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

    def _claim(self, limit: int) -> list[ClaimedDelivery]:
        with self._engine.begin() as conn:
            claimed = self._deliveries.claim(
                conn, owner=self.id, limit=limit, lease=self._config.lease
            )
        self._holding.update(d.id for d in claimed)
        return claimed

    def _endpoint(self, name: str) -> WebhookEndpoint | None:
        try:
            with self._engine.connect() as conn:
                return self._endpoints.get(conn, name)
        except NotFoundError:
            return None

    def _write(self, outcome: DeliveryOutcome) -> None:
        with self._engine.begin() as conn:
            kept = self._deliveries.record(conn, outcome, owner=self.id)
        self._holding.discard(outcome.id)
        if not kept:
            log.info("webhook delivery %s: the lease had passed to another agent", outcome.id)

    async def _write_unwritten(self) -> None:
        while self._unwritten:
            await asyncio.to_thread(self._write, self._unwritten[0])
            self._unwritten.pop(0)

    async def _finish(self, inflight: set[asyncio.Task[None]]) -> None:
        """Let requests in flight end, then give back what was claimed and not written."""
        if inflight:
            _, late = await asyncio.wait(inflight, timeout=self._config.timeout + STOP_GRACE)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*inflight, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._write_unwritten()
        await self._sender.close()
        ids = sorted(self._holding)
        if not ids:
            return
        try:
            await asyncio.to_thread(self._release, ids)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("webhooks: could not give back deliveries %s: %s", ids, first_line(exc))

    def _release(self, ids: list[int]) -> None:
        with self._engine.begin() as conn:
            self._deliveries.release(conn, ids, owner=self.id)
        self._holding.difference_update(ids)

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
