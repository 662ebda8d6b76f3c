"""The listeners of an agent: one per account with inbound settings, kept running.

:class:`InboundListeners` is a worker of the service's supervisor (and runs beside the
sender agent in ``postroom agent run``). It re-reads the accounts now and then, starts
a listener for each new one, restarts those whose settings changed and stops those
removed. Each listener keeps going by itself: a mail server that is down or refuses the
login is retried with capped, jittered backoff (its error written on the mailbox's row
for operators), the database's trouble is ridden out as the sender agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from postroom.accounts.models import EmailAccount
from postroom.agent.health import Backoff, Health, first_line, is_database_error
from postroom.errors import PostroomError, ThrottledError
from postroom.inbound.listener import MailboxListener
from postroom.inbound.mailboxes import LeaseLostError
from postroom.inbound.source import MailSource

log = logging.getLogger("postroom.inbound")

ACCOUNTS_REFRESH = 30.0  # seconds between reads of the accounts
STOP_TIMEOUT = 30.0  # how long a stopping listener may take to finish its message
MAX_THROTTLE_WAIT = 3600.0  # a Retry-After is obeyed up to an hour, never longer


@dataclass(frozen=True, slots=True)
class ListenerParts:
    """What a listener for one account is made of: its mailbox's listener and source."""

    listener: MailboxListener
    source: Callable[[], MailSource]


@dataclass(slots=True)
class _Running:
    account: EmailAccount
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass(slots=True)
class _Spell:
    """One listener's trouble, said once while it lasts."""

    said: str | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(first=1.0, cap=60.0))


class InboundListeners:
    """Every inbound listener of one agent; ``await run(stop=...)`` until stopped."""

    def __init__(
        self,
        *,
        agent_id: str,
        load_accounts: Callable[[], list[EmailAccount]],
        make: Callable[[EmailAccount], ListenerParts],
        refresh: float = ACCOUNTS_REFRESH,
        retry_first: float = 1.0,
        retry_cap: float = 60.0,
    ) -> None:
        self.id = agent_id
        self._load_accounts = load_accounts
        self._make = make
        self._refresh = refresh
        self._retry = (retry_first, retry_cap)
        self.health = Health(started=True)
        self._running: dict[str, _Running] = {}
        self._db_backoff = Backoff(first=retry_first, cap=retry_cap)

    @property
    def accounts(self) -> list[str]:
        """The accounts listened to now."""
        return sorted(self._running)

    async def run(self, *, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, then stop every listener (leases given back)."""
        try:
            while not stop.is_set():
                delay = self._refresh
                try:
                    accounts = await asyncio.to_thread(self._load_accounts)
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    self.database_trouble(exc)
                    delay = min(self._refresh, self._db_backoff.next_delay())
                else:
                    self.database_answers()
                    await self._reconcile({a.name: a for a in accounts if a.inbound is not None})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self._stop_all(list(self._running))

    async def _reconcile(self, wanted: dict[str, EmailAccount]) -> None:
        gone = [
            name
            for name, running in self._running.items()
            if wanted.get(name) != running.account or running.task.done()
        ]
        for name in gone:
            running = self._running[name]
            if running.task.done() and not running.task.cancelled():
                problem = running.task.exception()
                if problem is not None:  # a bug: said with its traceback, then restarted
                    log.error("inbound %s: listener crashed", name, exc_info=problem)
        await self._stop_all(gone)
        for name, account in wanted.items():
            if name not in self._running:
                stop = asyncio.Event()
                task = asyncio.create_task(self._listen(account, stop), name=f"inbound {name}")
                self._running[name] = _Running(account, stop, task)
                log.info("inbound %s: listening", name)

    async def _stop_all(self, names: list[str]) -> None:
        running = [self._running.pop(name) for name in names if name in self._running]
        for r in running:
            r.stop.set()
        tasks = [r.task for r in running]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in late:
            log.warning("%s did not stop in time; cancelled", task.get_name())
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- one account ---------------------------------------------------------------------

    async def _listen(self, account: EmailAccount, stop: asyncio.Event) -> None:
        try:
            parts = self._make(account)
        except PostroomError as exc:
            # Settings that cannot work wait for the account to change (it is re-read).
            log.warning("inbound %s: not listening: %s", account.name, exc)
            await stop.wait()
            return
        listener = parts.listener
        spell = _Spell(backoff=Backoff(first=self._retry[0], cap=self._retry[1]))
        try:
            while not stop.is_set():
                try:
                    if await listener.acquire():
                        self.database_answers()
                        await self._hold(listener, parts.source, stop, spell)
                        continue
                    self.database_answers()
                    # Another agent reads this mailbox: try again within its lease.
                    delay = listener.config.renew_every
                except LeaseLostError as exc:
                    log.info("inbound %s: %s; waiting for the mailbox", account.name, exc)
                    delay = listener.config.renew_every
                except Exception as exc:
                    delay = await self._trouble(account.name, listener, exc, spell)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            with contextlib.suppress(Exception):
                await listener.release()  # another agent may take the mailbox at once

    async def _hold(
        self,
        listener: MailboxListener,
        make_source: Callable[[], MailSource],
        stop: asyncio.Event,
        spell: _Spell,
    ) -> None:
        """Read the mailbox while the lease is ours: rounds, and waits for new mail."""
        source = make_source()
        try:
            await source.open()
            while not stop.is_set():
                await listener.round(source, stop=stop)
                await listener.note(None)
                self.database_answers()
                if spell.said is not None:
                    log.warning("inbound %s: reading mail again", listener.ref.account)
                    spell.said = None
                spell.backoff.reset()
                await listener.wait(source, stop)
        finally:
            with contextlib.suppress(Exception):
                await source.close()

    async def _trouble(
        self, name: str, listener: MailboxListener, exc: Exception, spell: _Spell
    ) -> float:
        """Say what went wrong (once while it lasts), note it, and how long to wait."""
        if is_database_error(exc):
            self.database_trouble(exc)
            return spell.backoff.next_delay()
        if isinstance(exc, PostroomError):
            reason = str(exc)
        else:  # a bug, or a library error no source translated: its traceback, once
            reason = f"unexpected {type(exc).__name__}: {first_line(exc)}"
        if reason != spell.said:
            bug = None if isinstance(exc, PostroomError) else exc
            log.warning("inbound %s: %s; retrying with backoff", name, reason, exc_info=bug)
            spell.said = reason
        with contextlib.suppress(Exception):
            await listener.note(reason)
        delay = spell.backoff.next_delay()
        if isinstance(exc, ThrottledError):
            # The service said how long to wait: asking sooner only prolongs the throttling.
            delay = max(delay, min(exc.retry_after, MAX_THROTTLE_WAIT))
        return delay

    # --- the database's health -----------------------------------------------------------

    def database_trouble(self, exc: BaseException) -> None:
        reason = f"database unavailable: {first_line(exc)}"
        if self.health.degrade(reason):
            log.warning("inbound listeners degraded: %s; retrying with backoff", reason)
        log.debug("database error", exc_info=exc)

    def database_answers(self) -> None:
        if self.health.recover():
            log.warning("inbound listeners: the database answers again; working")
        self._db_backoff.reset()
