"""Per-mailbox request limits for HTTP mail APIs: a concurrency cap and a shared pause.

Microsoft Graph allows 4 concurrent requests per mailbox; over that, or when a
mailbox is throttled, it answers 429 with ``Retry-After``. Every transport of a
process shares one :class:`MailboxGates`, so the cap holds however many connections
the agent opens, and one throttled request pauses all requests to that mailbox.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

GRAPH_CONCURRENCY = 4


class _Gate:
    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.paused_until = 0.0


class MailboxGates:
    """Concurrency caps and throttling pauses, one per mailbox, shared by a process."""

    def __init__(
        self, *, limit: int = GRAPH_CONCURRENCY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._guard = threading.Lock()
        # Semaphores belong to one event loop: one set of gates per loop.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Gate]] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self, mailbox: str) -> _Gate:
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._gates.setdefault(loop, {}).setdefault(mailbox.lower(), _Gate(self.limit))

    @asynccontextmanager
    async def slot(self, mailbox: str) -> AsyncIterator[None]:
        """Hold one of the mailbox's request slots, after any pause has passed."""
        gate = self._gate(mailbox)
        while (wait := gate.paused_until - self._clock()) > 0:
            await asyncio.sleep(wait)
        async with gate.slots:
            # A pause may have begun while this request waited for its slot.
            while (wait := gate.paused_until - self._clock()) > 0:
                await asyncio.sleep(wait)
            yield

    def pause(self, mailbox: str, seconds: float) -> None:
        """No request to ``mailbox`` starts for ``seconds`` (the service's Retry-After)."""
        gate = self._gate(mailbox)
        gate.paused_until = max(gate.paused_until, self._clock() + seconds)
