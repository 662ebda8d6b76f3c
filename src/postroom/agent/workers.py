"""N sender agents as processes under one supervisor (``--workers N``).

Each worker is a :mod:`postroom.agent.worker` process started with ``spawn`` (the
supervisor has threads and pooled connections: forking it would copy them mid-use).
The workers share nothing but the database: leases and claims keep them apart exactly
as they keep separate agents apart. A worker that ends when nobody asked is started
again after a capped backoff; the rows it held come back when their lease lapses. One
that keeps ending before it could start (an import that fails, say) is fatal instead.

Processes are started from the event loop's thread: Linux sends PDEATHSIG when the
*thread* that forked a child ends, so a short-lived thread must never start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from postroom.agent.health import Backoff
from postroom.agent.recording import AgentStats
from postroom.agent.worker import (
    FATAL_EXIT,
    Fatal,
    Progress,
    Report,
    Started,
    Stopped,
    WorkerOrder,
)
from postroom.agent.worker import run_worker as worker_main
from postroom.settings import Settings
from postroom.supervisor import HEALTHY_RUN, TaskState, TaskStatus

log = logging.getLogger("postroom.agent")

# How long stopping workers may take to finish their batch before they are killed.
STOP_TIMEOUT = 30.0
# After SIGKILL, the exit is reported at once; this bounds the wait for it all the same.
KILL_WAIT = 5.0
# A worker that ends this many times in a row before its agent starts will not start.
FAILED_STARTS = 3


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return os.cpu_count() or 1


def exit_text(code: int | None) -> str:
    """How a process ended, in words: an exit code or the signal that killed it."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(slots=True)
class _Slot:
    """One of the N places a worker runs in, across its restarts."""

    number: int
    backoff: Backoff
    process: BaseProcess | None = None
    channel: Connection | None = None
    agent_id: str | None = None
    restarts: int = 0
    restarting: bool = False
    fatal: str | None = None
    failed_starts: int = 0  # ends in a row before the agent started
    last: Progress | None = None  # the running agent's totals as last reported
    stopped: bool = False  # its agent reported its final totals


@dataclass(slots=True)
class _Totals:
    stats: AgentStats = field(default_factory=AgentStats)
    partial: int = 0  # workers whose totals are known only up to their last report

    def add(self, report: Progress | Stopped) -> None:
        self.stats.sent += report.sent
        self.stats.failed += report.failed
        self.stats.retried += report.retried
        self.stats.held += report.held


class Workers:
    """Runs ``count`` sender agent processes, restarts those that die, stops them all."""

    def __init__(
        self,
        settings: Settings,
        *,
        count: int,
        until_idle: bool = False,
        say: Callable[[str], None] = log.info,
        place: str = "the database",
        stop_timeout: float = STOP_TIMEOUT,
        first_backoff: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._settings = settings
        self._until_idle = until_idle
        self._say = say
        self._place = place
        self._stop_timeout = stop_timeout
        self._context = multiprocessing.get_context("spawn")
        self._slots = [
            _Slot(n, Backoff(first=first_backoff, cap=backoff_cap)) for n in range(1, count + 1)
        ]
        self._totals = _Totals()
        self._state = TaskState.STARTING
        self.fatal: str | None = None  # why the workers were stopped, when they could not work

    @property
    def count(self) -> int:
        return len(self._slots)

    @property
    def partial(self) -> int:
        """How many workers ended without final totals (killed): counted as last reported."""
        return self._totals.partial

    def progress(self) -> AgentStats:
        """The totals so far: of the workers that ended, and of those running as last reported."""
        now = _Totals(replace(self._totals.stats))
        for slot in self._slots:
            if slot.last is not None and not slot.stopped:
                now.add(slot.last)
        return now.stats

    def pids(self) -> list[int]:
        """The pids of the workers running now."""
        return [
            s.process.pid
            for s in self._slots
            if s.process is not None and s.process.pid is not None and s.process.is_alive()
        ]

    def status(self) -> TaskStatus:
        """The workers as one task of the health check: how many run, how many restarts."""
        restarts = sum(s.restarts for s in self._slots)
        if self.fatal is not None:
            return TaskStatus("agent", TaskState.DEGRADED, self.fatal, restarts)
        if self._state is not TaskState.RUNNING:
            return TaskStatus("agent", self._state, None, restarts)
        running = len(self.pids())
        waiting = [str(s.number) for s in self._slots if s.restarting]
        reason = f"{running} of {self.count} workers running"
        if waiting:
            reason += "; restarting worker " + ", ".join(waiting)
        state = TaskState.RUNNING if running else TaskState.RESTARTING
        return TaskStatus("agent", state, reason, restarts)

    async def run(self, *, stop: asyncio.Event) -> AgentStats:
        """Run the workers until ``stop`` (or, with ``until_idle``, until all are done).

        Returns the totals the workers reported as they stopped, and those of killed
        workers as last reported (:attr:`partial` counts them). A worker's fatal fault,
        or one that ends :data:`FAILED_STARTS` times in a row before it starts, stops
        them all; :attr:`fatal` then says why.
        """
        halt = asyncio.Event()
        relay = asyncio.create_task(_follow(stop, halt))
        self._state = TaskState.RUNNING
        try:
            await asyncio.gather(*(self._keep(slot, halt) for slot in self._slots))
        finally:
            relay.cancel()
            self._state = TaskState.STOPPED
        return self._totals.stats

    async def _keep(self, slot: _Slot, halt: asyncio.Event) -> None:
        """Run one slot's worker, again and again, until asked to stop."""
        while not halt.is_set():
            began = time.monotonic()
            process = self._start(slot)
            await self._until_exit(slot, halt)
            # The sentinel closes as the process ends, a moment before it can be reaped.
            process.join(KILL_WAIT)
            code, pid = process.exitcode, process.pid
            self._close(slot)
            if slot.fatal is not None or code == FATAL_EXIT:
                reason = slot.fatal or f"worker {slot.number} cannot work"
                self._give_up(halt, reason, said=f"worker {slot.number}: {reason}")
                return
            if halt.is_set() or (code == 0 and self._until_idle):
                return
            slot.failed_starts = slot.failed_starts + 1 if slot.agent_id is None else 0
            if slot.failed_starts >= FAILED_STARTS:
                # No restart would do better: the same code fails the same way each time.
                reason = (
                    f"worker {slot.number} {exit_text(code)} before its agent started, "
                    f"{slot.failed_starts} times in a row"
                )
                self._give_up(halt, reason, said=reason)
                return
            if time.monotonic() - began > HEALTHY_RUN:
                slot.backoff.reset()
            delay = slot.backoff.next_delay()
            log.error(
                "worker %d (pid %s) %s unexpectedly; starting it again in %.1f s",
                slot.number,
                pid,
                exit_text(code),
                delay,
            )
            slot.restarts += 1
            slot.restarting = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), delay)
            slot.restarting = False

    def _give_up(self, halt: asyncio.Event, reason: str, *, said: str) -> None:
        self.fatal = reason
        log.error("%s; stopping all workers", said)
        halt.set()

    def _start(self, slot: _Slot) -> BaseProcess:
        receiving, sending = self._context.Pipe(duplex=False)
        order = WorkerOrder(
            self._settings,
            parent=os.getpid(),
            until_idle=self._until_idle,
            number=slot.number,
        )
        process = self._context.Process(
            target=worker_main,
            args=(order, sending),
            name=f"postroom-worker-{slot.number}",
            # Should the supervisor end without stopping them (a bug), multiprocessing's
            # exit handler then terminates daemonic children instead of waiting for them.
            daemon=True,
        )
        process.start()
        sending.close()  # the child holds its end: the parent's copy would hide its exit
        slot.process, slot.channel, slot.agent_id = process, receiving, None
        slot.last, slot.stopped = None, False
        asyncio.get_running_loop().add_reader(receiving.fileno(), self._receive, slot)
        return process

    def _receive(self, slot: _Slot) -> bool:
        """Read one report of a worker; ``False`` once its channel is closed."""
        channel = slot.channel
        if channel is None:
            return False
        try:
            report: Report = channel.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(channel.fileno())
            return False
        if isinstance(report, Started):
            slot.agent_id = report.agent_id
            self._say(f"agent {report.agent_id} running on {self._place}")
        elif isinstance(report, Progress):
            slot.last = report
        elif isinstance(report, Stopped):
            self._totals.add(report)
            slot.stopped = True
            self._say(
                f"agent {report.agent_id} stopped: {report.sent} sent, {report.failed} failed, "
                f"{report.retried} to retry, {report.held} held"
            )
        elif isinstance(report, Fatal):
            slot.fatal = report.reason
        return True

    async def _until_exit(self, slot: _Slot, halt: asyncio.Event) -> None:
        """Wait for the slot's process to end; on ``halt``, stop it (SIGTERM, then SIGKILL)."""
        process = slot.process
        assert process is not None
        ended = _exited(process)
        halted = asyncio.ensure_future(halt.wait())
        try:
            either: list[asyncio.Future[Any]] = [ended, halted]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                return
            process.terminate()  # SIGTERM: the worker finishes its batch and records it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), self._stop_timeout)
                return
            log.warning(
                "worker %d (pid %s) did not stop within %.0f s: killed",
                slot.number,
                process.pid,
                self._stop_timeout,
            )
            process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), KILL_WAIT)
        finally:
            halted.cancel()
            ended.cancel()

    def _close(self, slot: _Slot) -> None:
        """Read the reports a worker left behind, then let go of its process and channel."""
        process, channel = slot.process, slot.channel
        if channel is not None:
            with contextlib.suppress(OSError):
                while channel.poll() and self._receive(slot):
                    pass
            asyncio.get_running_loop().remove_reader(channel.fileno())
            channel.close()
        if slot.agent_id is not None and not slot.stopped:  # killed: its last report stands
            if slot.last is not None:
                self._totals.add(slot.last)
            self._totals.partial += 1
        slot.last, slot.stopped = None, True
        if process is not None:
            process.join(KILL_WAIT)
            if process.exitcode is not None:
                process.close()
        slot.process, slot.channel = None, None


def _exited(process: BaseProcess) -> asyncio.Future[None]:
    """A future done when ``process`` has ended (its sentinel becomes readable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sentinel = process.sentinel

    def ready() -> None:
        loop.remove_reader(sentinel)
        if not done.done():
            done.set_result(None)

    loop.add_reader(sentinel, ready)
    done.add_done_callback(lambda _: loop.remove_reader(sentinel))
    return done


async def _follow(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
