"""Group commits of delivery outcomes, written while the batch is still being sent.

An outcome is written within about ``window`` seconds of its arrival (sooner once
``group`` are waiting), so an agent killed mid-batch resends only what the server
accepted in the last unwritten window, not the whole batch. Outcomes that cannot be
written (the database is away) are kept, in order, and written first when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from postroom.agent.health import is_database_error
from postroom.agent.recording import AgentStats, Tally
from postroom.outbox.models import ClaimedEmail, Outcome

log = logging.getLogger("postroom.agent")

# (outcome, the claimed row it is for): what one written outcome needs.
Pending = tuple[Outcome, ClaimedEmail]
Writer = Callable[[Sequence[Pending]], Tally]


class OutcomeRecorder:
    """Collects outcomes as they arrive and writes them in small group commits.

    ``write`` runs in a worker thread and commits before it returns. A database error
    stops the background writing (the agent's main loop retries with backoff, through
    :meth:`flush`), so an outage costs one failed write, not one per outcome.
    """

    def __init__(
        self, write: Writer, *, totals: AgentStats, window: float = 0.02, group: int = 32
    ) -> None:
        self._write = write
        self._window = window
        self._group = group
        self._pending: list[Pending] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one write at a time, in arrival order
        self.error: BaseException | None = None  # the last write's database error
        self.totals = totals  # what is written is counted here

    @property
    def pending(self) -> int:
        """Outcomes not written yet."""
        return len(self._pending)

    def add(self, outcome: Outcome, row: ClaimedEmail) -> None:
        """Take the outcome of ``row``; it is written in the background within the window."""
        self._pending.append((outcome, row))
        self._arrived.set()
        if self._task is None and self.error is None:
            self._task = asyncio.create_task(self._background(), name="outcome recorder")

    async def _background(self) -> None:
        try:
            while self._pending and self.error is None:
                if len(self._pending) < self._group:
                    # Wait out the window for company, unless a group fills first.
                    deadline = asyncio.get_running_loop().time() + self._window
                    while len(self._pending) < self._group:
                        remaining = deadline - asyncio.get_running_loop().time()
                        if remaining <= 0:
                            break
                        self._arrived.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._arrived.wait(), remaining)
                await self._write_pending()
        finally:
            self._task = None

    async def _write_pending(self) -> None:
        async with self._lock:
            chunk, self._pending = self._pending, []
            if not chunk:
                return
            try:
                tally = await asyncio.to_thread(self._write, chunk)
            except Exception as exc:
                # Kept in front of anything that arrived meanwhile: written first later.
                self._pending[:0] = chunk
                if not is_database_error(exc):
                    raise
                self.error = exc
                return
            self.error = None
            self.totals.add(tally)

    async def flush(self) -> None:
        """Write everything pending now; raises the database error if that fails.

        Cancelling the caller never cancels a write in flight: its thread would go on
        and commit anyway, so the write is awaited to its end first.
        """
        while self._task is not None:
            task = self._task
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if self._task is task:
                break
        self.error = None
        if self._pending:
            await asyncio.shield(self._write_pending())
        if self.error is not None:
            raise self.error
