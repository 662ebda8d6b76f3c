"""One mailbox's listener: under the mailbox's lease, rounds of fetch, ingest, settle, wait.

A round: every new message since the cursor is fetched in bounded batches, each one
ingested in a transaction of its own that also checks the lease and saves the cursor
(so a lost lease rolls the message back, and a crash neither re-reads nor skips); the
committed ones are then settled on the server (flagged, moved or deleted) and marked so
here; what a crash left committed and unsettled is settled at the end of the next round.
Between rounds the listener waits for new mail (IMAP IDLE), renewing its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from postroom.inbound import mailboxes
from postroom.inbound.mailboxes import LeaseLostError
from postroom.inbound.models import Cursor, FetchedMessage, InboundStatus, MailboxRef
from postroom.inbound.source import MailSource

log = logging.getLogger("postroom.inbound")
T = TypeVar("T")
# A wait that ends this much before its time was woken by the server (new mail).
_WOKEN_EARLY = 0.9


class Ingested(Protocol):
    """What ingesting one message did (``IngestResult`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> InboundStatus: ...
    @property
    def duplicate(self) -> bool: ...
    @property
    def settle(self) -> bool: ...
    @property
    def immediate(self) -> tuple[int, ...]: ...


class Ingest(Protocol):
    """Commits one message and all it causes (``Ingestor`` fits)."""

    def ingest(
        self,
        mailbox: MailboxRef,
        item: FetchedMessage,
        *,
        validity: str | None,
        within: Callable[[Connection], None] | None = None,
    ) -> Ingested: ...


class Leftovers(Protocol):
    """Committed messages still to settle on the server (``InboundStore`` fits)."""

    def pending_keys(
        self, conn: Connection, mailbox: MailboxRef, validity: str | None
    ) -> list[tuple[int, str]]: ...

    def mark_settled(self, conn: Connection, ids: Sequence[int]) -> object: ...


_COUNTED = {
    InboundStatus.MATCHED: "matched",
    InboundStatus.NEW_CASE: "new_cases",
    InboundStatus.UNMATCHED: "unmatched",
    InboundStatus.AUTOMATIC: "automatic",
    InboundStatus.BOUNCE: "bounces",
    InboundStatus.TOO_LARGE: "too_large",
}


@dataclass(slots=True)
class PollReport:
    """What rounds did: messages read, where they went, and how many were settled."""

    read: int = 0
    matched: int = 0
    new_cases: int = 0
    unmatched: int = 0
    automatic: int = 0
    bounces: int = 0
    too_large: int = 0
    duplicates: int = 0
    settled: int = 0

    def count(self, result: Ingested) -> None:
        self.read += 1
        if result.duplicate:
            self.duplicates += 1
            return
        name = _COUNTED.get(result.status)
        if name is not None:
            setattr(self, name, getattr(self, name) + 1)

    def add(self, other: PollReport) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def lines(self) -> list[tuple[str, int]]:
        """Each count with its name in words, in a fixed order."""
        return [(name.replace("_", " "), getattr(self, name)) for name in self.__slots__]


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How a listener holds its mailbox and paces its rounds."""

    lease_seconds: float = 60.0
    batch: int = 50
    poll_seconds: float = 30.0

    @property
    def renew_every(self) -> float:
        """Leases are renewed well inside their length: three times per lease."""
        return self.lease_seconds / 3


@dataclass(slots=True)
class MailboxListener:
    """Reads one mailbox for one owner (an agent, or a single poll)."""

    engine: Engine
    ref: MailboxRef
    owner: str
    ingestor: Ingest
    store: Leftovers
    config: ListenerConfig
    deliver: Callable[[Sequence[int]], None]
    report: PollReport = field(default_factory=PollReport)

    # --- the lease -----------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Take the mailbox's lease (or keep it); ``False`` while another holds it."""
        return await asyncio.to_thread(self._in_transaction, self._acquire)

    def _acquire(self, conn: Connection) -> bool:
        return mailboxes.acquire(conn, self.ref, owner=self.owner, lease=self.config.lease_seconds)

    async def renew(self) -> None:
        """Extend the lease; :class:`LeaseLostError` when another listener has it now."""
        if not await asyncio.to_thread(self._in_transaction, self._renew):
            raise LeaseLostError(f"mailbox {self.ref.key}: another listener holds it now")

    def _renew(self, conn: Connection) -> bool:
        return mailboxes.renew(
            conn, self.ref.key, owner=self.owner, lease=self.config.lease_seconds
        )

    async def release(self) -> None:
        await asyncio.to_thread(
            self._in_transaction,
            lambda conn: mailboxes.release(conn, self.ref.key, owner=self.owner),
        )

    async def note(self, error: str | None) -> None:
        """Write the round's time and error (``None``: it went well) on the mailbox's row."""
        await asyncio.to_thread(
            self._in_transaction,
            lambda conn: mailboxes.note_poll(conn, self.ref.key, error=error),
        )

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    # --- a round -------------------------------------------------------------------------

    async def round(
        self,
        source: MailSource,
        *,
        stop: asyncio.Event | None = None,
        report: PollReport | None = None,
    ) -> PollReport:
        """Fetch, ingest and settle everything new, then what earlier rounds left unsettled.

        Needs the lease. Stops between messages once ``stop`` is set (what is committed
        is settled first). Raises :class:`LeaseLostError` when the lease was taken over.
        The counts go into ``report`` as the round goes, so that a caller still knows
        what a round that failed half-way had done.
        """
        report = PollReport() if report is None else report
        try:
            cursor = await asyncio.to_thread(self._in_transaction, self._load_cursor)
            async for batch in source.fetch(cursor, batch=self.config.batch):
                stopped = await self._ingest_batch(source, batch, cursor, report, stop)
                if batch and batch[-1].cursor is not None:
                    cursor = batch[-1].cursor
                if stopped:
                    break
                await self.renew()
            await self._settle_leftovers(source, report)
        finally:
            self.report.add(report)
        return report

    def _load_cursor(self, conn: Connection) -> Cursor:
        return mailboxes.load_cursor(conn, self.ref.key)

    async def _ingest_batch(
        self,
        source: MailSource,
        batch: Sequence[FetchedMessage],
        cursor: Cursor,
        report: PollReport,
        stop: asyncio.Event | None,
    ) -> bool:
        """Ingest a batch message by message, then settle what was committed.

        ``True`` when ``stop`` cut it short.
        """
        keys: list[str] = []
        ids: list[int] = []
        immediate: list[int] = []
        stopped = False
        try:
            for item in batch:
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                validity = (item.cursor or cursor).validity
                result = await asyncio.to_thread(
                    self.ingestor.ingest,
                    self.ref,
                    item,
                    validity=validity,
                    within=self._fence(item.cursor),
                )
                report.count(result)
                immediate.extend(result.immediate)
                if result.settle:
                    keys.append(item.key)
                    ids.append(result.id)
        finally:
            # Committed is committed: whatever stopped the batch, its emails go out now
            # (what fails stays queued for the agent).
            if immediate:
                await asyncio.to_thread(self.deliver, immediate)
        if keys:
            await source.settle(keys)
            await asyncio.to_thread(self._in_transaction, self._marker(ids))
            report.settled += len(ids)
        return stopped

    def _fence(self, cursor: Cursor | None) -> Callable[[Connection], None]:
        """The check run inside each ingest transaction: the lease, renewed, and the cursor."""

        def within(conn: Connection) -> None:
            mailboxes.check_lease(
                conn, self.ref.key, self.owner, cursor=cursor, lease=self.config.lease_seconds
            )

        return within

    def _marker(self, ids: Sequence[int]) -> Callable[[Connection], None]:
        return lambda conn: self._mark(conn, ids)

    def _mark(self, conn: Connection, ids: Sequence[int]) -> None:
        self.store.mark_settled(conn, list(ids))

    async def _settle_leftovers(self, source: MailSource, report: PollReport) -> None:
        """Settle what is committed here and still pending there (a crash came between).

        Only keys of the folder's current validity: after a UIDVALIDITY change the old
        UIDs name other messages, and the resync settles those under their new ones.
        """
        validity = (await asyncio.to_thread(self._in_transaction, self._load_cursor)).validity
        # A source that knows the folder's validity now (IMAP after SELECT) settles
        # nothing by the keys of another: the resync of the next round takes them.
        current = getattr(source, "validity", None)
        if current is not None and str(current) != validity:
            return
        pending = await asyncio.to_thread(
            self._in_transaction,
            lambda conn: self.store.pending_keys(conn, self.ref, validity),
        )
        for start in range(0, len(pending), self.config.batch):
            chunk = pending[start : start + self.config.batch]
            await source.settle([key for _, key in chunk])
            await asyncio.to_thread(self._in_transaction, self._marker([i for i, _ in chunk]))
            report.settled += len(chunk)

    # --- waiting -------------------------------------------------------------------------

    async def wait(self, source: MailSource, stop: asyncio.Event) -> None:
        """Wait for new mail up to ``poll_seconds``, renewing the lease in between.

        Each slice of the wait is at most a third of the lease; a slice the server cut
        short (IDLE saw new mail) ends the wait.
        """
        deadline = time.monotonic() + self.config.poll_seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            piece = min(left, self.config.renew_every)
            began = time.monotonic()
            woken = await _first(source.wait(piece), stop)
            await self.renew()
            if woken and time.monotonic() - began < piece * _WOKEN_EARLY:
                return


async def _first(waiting: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await ``waiting`` unless ``stop`` is set first; ``True`` when ``waiting`` ended."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.done() and not task.cancelled():
        task.result()  # the source's error, if it failed
        return True
    return False
