"""One attempt of a claimed delivery: check the URL, POST the event, say what came of it.

The endpoint comes with the claim (read and its secret decrypted once per claimed batch,
not per delivery). The URL is checked as written before an attempt; its name is resolved
and each address checked when a connection is opened (``pinned``), so the request goes
to an address that was checked (a name may come to resolve into the network, or answer
differently to a check and to the connection). Kept-alive connections were checked when
they were opened; a refused address ends the delivery failed without a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, PostroomError
from postroom.webhooks.backoff import RetryPolicy, next_attempt
from postroom.webhooks.deliveries import ClaimedDelivery, DeliveryOutcome
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import DeliveryStatus
from postroom.webhooks.pinned import AddressRules
from postroom.webhooks.sender import SendResult, WebhookSender
from postroom.webhooks.urls import check_webhook_url


@dataclass(frozen=True, slots=True)
class EndpointNow:
    """An endpoint as read with a claim: the record, or why there is none to send to."""

    endpoint: WebhookEndpoint | None
    trouble: str | None = None  # e.g. its secret cannot be decrypted with this key


class UrlChecks(AddressRules):
    """An agent's URL rules: the URL as written before each attempt, addresses at connect."""

    def check(self, url: str) -> None:
        """Return if ``url`` passes as written (no DNS); else raise ConfigurationError."""
        check_webhook_url(url, allowed=self.allowed, resolve=False)


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
        urls.check(endpoint.url)
        result = await sender.send(
            endpoint.url,
            secret=endpoint.secret.get_secret_value(),
            event_id=claimed.event_id,
            payload=claimed.payload,
            rules=urls,
        )
    except ConfigurationError as exc:  # refused as written or by an address it resolves to
        return end(claimed, str(exc))
    except PostroomError as exc:  # the name does not resolve (now)
        return again(claimed, SendResult(None, str(exc), 0), retry)
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
