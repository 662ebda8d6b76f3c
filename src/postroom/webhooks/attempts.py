"""One attempt of a claimed delivery: check the URL, POST the event, say what came of it.

The endpoint comes with the claim (read and its secret decrypted once per claimed batch,
not per delivery). The URL is checked again with DNS before an attempt, as a name may
come to resolve into the network; a check that passed is trusted for ``URL_CHECK_SECONDS``
so that a burst of deliveries to one endpoint costs one lookup, not one per request.
Refusals and lookup failures are never kept: the next attempt checks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass

from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, PostroomError
from postroom.webhooks.backoff import RetryPolicy, next_attempt
from postroom.webhooks.deliveries import ClaimedDelivery, DeliveryOutcome
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import DeliveryStatus
from postroom.webhooks.sender import SendResult, WebhookSender
from postroom.webhooks.urls import Lookup, check_webhook_url

URL_CHECK_SECONDS = 5.0  # how long a URL that passed its DNS check is trusted


@dataclass(frozen=True, slots=True)
class EndpointNow:
    """An endpoint as read with a claim: the record, or why there is none to send to."""

    endpoint: WebhookEndpoint | None
    trouble: str | None = None  # e.g. its secret cannot be decrypted with this key


class UrlChecks:
    """The URL check before each attempt, with passes remembered for a few seconds."""

    def __init__(self, *, allowed: Collection[str], ttl: float = URL_CHECK_SECONDS) -> None:
        self.allowed = allowed
        self.lookup: Lookup | None = None
        self._ttl = ttl
        self._passed: dict[str, float] = {}  # URL -> until when its pass holds

    async def check(self, url: str) -> None:
        """Return if events may go to ``url`` now; else raise as ``check_webhook_url``."""
        now = time.monotonic()
        if self._passed.get(url, 0.0) > now:
            return
        self._passed.pop(url, None)
        await asyncio.to_thread(
            check_webhook_url, url, allowed=self.allowed, resolve=True, lookup=self.lookup
        )
        self._passed[url] = time.monotonic() + self._ttl


async def attempt(
    claimed: ClaimedDelivery,
    found: EndpointNow,
    *,
    sender: WebhookSender,
    urls: UrlChecks,
    retry: RetryPolicy,
) -> DeliveryOutcome:
    """Send ``claimed`` to its endpoint once; the outcome to write (nothing written here)."""
    name = claimed.endpoint
    if found.trouble is not None:
        return again(claimed, SendResult(None, found.trouble, 0), retry)
    endpoint = found.endpoint
    if endpoint is None:
        return end(claimed, f"endpoint {name} was deleted")
    if not endpoint.enabled:
        return end(claimed, f"endpoint {name} is disabled")
    try:
        await urls.check(endpoint.url)
    except ConfigurationError as exc:
        return end(claimed, str(exc))
    except PostroomError as exc:  # the name does not resolve (now)
        return again(claimed, SendResult(None, str(exc), 0), retry)
    result = await sender.send(
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
        return end(claimed, "HTTP 410 Gone: the endpoint wants no more events", result)
    return again(claimed, result, retry)


def again(claimed: ClaimedDelivery, result: SendResult, retry: RetryPolicy) -> DeliveryOutcome:
    """Try again after a backoff, or end failed when that would pass the window."""
    now = utcnow()
    error = result.error or "no answer"
    at = next_attempt(
        attempts=claimed.attempts, window_start=claimed.window_start, now=now, policy=retry
    )
    if at is None:
        return end(
            claimed,
            f"{error}; gave up after {claimed.attempts} attempts in {retry.window_hours:g} h",
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


def end(claimed: ClaimedDelivery, error: str, result: SendResult | None = None) -> DeliveryOutcome:
    """The delivery ends failed with ``error``."""
    return DeliveryOutcome(
        id=claimed.id,
        status=DeliveryStatus.FAILED,
        at=utcnow(),
        duration_ms=result.duration_ms if result else 0,
        status_code=result.status_code if result else None,
        error=error,
    )
