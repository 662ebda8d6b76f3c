"""When to try again: exponential backoff with jitter, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


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
