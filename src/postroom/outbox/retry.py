"""When to try again: exponential backoff with jitter, when to give up, Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff and limits for transient failures."""

    max_attempts: int = 8
    max_age: timedelta = timedelta(days=2)
    base: float = 30.0
    cap: float = 3600.0

    def delay(self, attempts: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failure: half fixed, half random."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def gives_up(self, *, attempts: int, created_at: datetime, now: datetime) -> str | None:
        """Why no further attempt is made, or ``None`` to try again."""
        if attempts >= self.max_attempts:
            return f"gave up after {attempts} attempts"
        if now - created_at >= self.max_age:
            return f"gave up: the email is older than {self.max_age}"
        return None


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
