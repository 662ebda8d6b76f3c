"""Group commits of delivery outcomes, written while the batch is still being sent.

An outcome is written within about ``window`` seconds of its arrival (sooner once
``group`` are waiting), so an agent killed mid-batch resends only what the server
accepted in the last unwritten window, not the whole batch. Outcomes that cannot be
written (the database is away) are kept, in order, and written first when it is back.

The window stretches while outcomes come fast: a write that carries a whole ``group``
doubles it (up to ``max_window``), one that carries less than a quarter of a group
halves it again. A write runs in a thread beside the event loop that is sending, and
both need the interpreter: dozens of commits a second cost a busy agent a quarter of
its throughput, while a few larger ones cost it nothing. A slow server (a few outcomes
a window) keeps the short window, and with it the fewest duplicates after a crash.
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
        self,
        write: Writer,
        *,
        totals: AgentStats,
        window: float = 0.02,
        max_window: float = 0.25,
        group: int = 32,
    ) -> None:
        self._write = write
        self._window = self._min_window = window
        self._max_window = max(window, max_window)
        self._group = group
        self._pending: list[Pending] = []
        self._full = asyncio.Event()  # a group is waiting
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
        if len(self._pending) >= self._group and self._window <= self._min_window:
            # Only a full group wakes the writer early: waking it for every outcome
            # would cost the event loop more than the writing does.
            self._full.set()
        if self._task is None and self.error is None:
            self._task = asyncio.create_task(self._background(), name="outcome recorder")

    async def _background(self) -> None:
        try:
            while self._pending and self.error is None:
                if len(self._pending) < self._group:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._window)
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
            if len(chunk) >= self._group:
                self._window = min(self._max_window, self._window * 2)
            elif len(chunk) * 4 < self._group:
                self._window = max(self._min_window, self._window / 2)

    async def flush(self) -> None:
        """Write everything pending now; raises the database error if that fails.

        Cancelling the caller never cancels a write in flight: its thread would go on
        and commit anyway, so the write is awaited to its end first.
        """
        while self._task is not None:
            task = self._task
            self._full.set()  # no point waiting out the window: write now
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if self._task is task:
                break
        self.error = None
        if self._pending:
            await asyncio.shield(self._write_pending())
        if self.error is not None:
            raise self.error
