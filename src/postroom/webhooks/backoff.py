"""When a webhook delivery is tried again, and when it is given up.

Pure: no I/O. Waits double from ``base`` up to ``cap``, with a little jitter so that
many deliveries that failed together (an endpoint down) do not come back in step; a
delivery whose next try would fall past its retry window ends failed instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

JITTER = 0.1  # up to 10 % added to each wait


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The settings that shape retries: first wait, longest wait, and the window."""

    base: float
    cap: float
    window_hours: float


def wait_after(attempts: int, policy: RetryPolicy, *, jitter: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
    ceiling = min(policy.cap, policy.base * 2.0 ** min(max(attempts - 1, 0), 32))
    spread = random.uniform(0.0, JITTER) if jitter is None else jitter  # noqa: S311
    return ceiling * (1.0 + spread)


def next_attempt(
    *,
    attempts: int,
    window_start: datetime,
    now: datetime,
    policy: RetryPolicy,
    jitter: float | None = None,
) -> datetime | None:
    """When to try again, or None when that would be past the retry window."""
    at = now + timedelta(seconds=wait_after(attempts, policy, jitter=jitter))
    if at > window_start + timedelta(hours=policy.window_hours):
        return None
    return at
