"""Per-mailbox request limits for HTTP mail APIs: a concurrency cap and a shared pause.

Microsoft Graph allows 4 concurrent requests per mailbox; over that, or when a
mailbox is throttled, it answers 429 with ``Retry-After``. Every transport of a
process shares one :class:`MailboxGates`, so the cap holds however many connections
and event loops (the agent's, immediate sends') there are, and one throttled
request pauses all requests to that mailbox. A pause longer than a caller will wait
raises :class:`~postroom.errors.ThrottledError`: the email goes back to the outbox
rather than holding up the agent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from postroom.errors import ThrottledError

GRAPH_CONCURRENCY = 4
_POLL = 0.01  # how often a request waiting for a slot looks again


@dataclass(slots=True)
class _Gate:
    in_use: int = 0
    paused_until: float = 0.0


class MailboxGates:
    """Concurrency caps and throttling pauses, one per mailbox, shared by a process."""

    def __init__(
        self, *, limit: int = GRAPH_CONCURRENCY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        # A thread lock, not an asyncio one: the gates span event loops and threads.
        self._guard = threading.Lock()
        self._gates: dict[str, _Gate] = {}

    def _gate(self, mailbox: str) -> _Gate:
        return self._gates.setdefault(mailbox.lower(), _Gate())

    @asynccontextmanager
    async def slot(self, mailbox: str, *, max_wait: float = float("inf")) -> AsyncIterator[None]:
        """Hold one of the mailbox's request slots once any pause has passed.

        Raises :class:`ThrottledError` instead of waiting out a pause longer than
        ``max_wait`` seconds.
        """
        while True:
            with self._guard:
                gate = self._gate(mailbox)
                pause = gate.paused_until - self._clock()
                if pause <= 0 and gate.in_use < self.limit:
                    gate.in_use += 1
                    break
            if pause > max_wait:
                raise ThrottledError(
                    f"mailbox {mailbox} is paused for {pause:.0f} s more at the service's request",
                    retry_after=pause,
                )
            await asyncio.sleep(max(pause, _POLL))
        try:
            yield
        finally:
            with self._guard:
                gate.in_use -= 1

    def pause(self, mailbox: str, seconds: float) -> None:
        """No request to ``mailbox`` starts for ``seconds`` (the service's Retry-After)."""
        with self._guard:
            gate = self._gate(mailbox)
            gate.paused_until = max(gate.paused_until, self._clock() + seconds)
