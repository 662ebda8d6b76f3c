"""One worker of ``postroom agent run --workers N``: a sender agent in a process of its own.

The supervisor (:mod:`postroom.agent.workers`) starts it with the ``spawn`` method and
hands it the resolved settings through multiprocessing's pipe, never on the command line.
It tells the supervisor what it does over a one-way channel (started, its totals so far
with each heartbeat, stopped with its totals, or a fatal fault) and prints nothing itself.
It stops cleanly on SIGTERM/SIGINT, and on its own when the supervisor is gone (a channel
that no longer takes reports says so too: that is not an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from postroom.agent.opening import open_when_the_database_answers
from postroom.agent.recording import AgentStats
from postroom.app import Postroom
from postroom.errors import PostroomError
from postroom.proctitle import name_process
from postroom.settings import Settings

log = logging.getLogger("postroom.agent")

# "Do not start me again": a database that cannot heal, settings that cannot work.
FATAL_EXIT = 78  # EX_CONFIG of sysexits.h
# How often a worker checks that its supervisor is still there (the fallback of PDEATHSIG).
ORPHAN_CHECK = 1.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Started:
    """The worker's agent is registered under this id and claims emails."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """The worker's agent stopped cleanly after doing this."""

    agent_id: str
    sent: int
    failed: int
    retried: int
    held: int


@dataclass(frozen=True, slots=True)
class Progress:
    """The worker's agent has done this so far (its totals should it be killed)."""

    agent_id: str
    sent: int
    failed: int
    retried: int
    held: int


@dataclass(frozen=True, slots=True)
class Fatal:
    """The worker cannot work, and no restart would change that."""

    reason: str


Report = Started | Progress | Stopped | Fatal


@dataclass(frozen=True, slots=True)
class WorkerOrder:
    """What a worker is to do: picklable, sent through the spawn pipe."""

    settings: Settings
    parent: int  # the supervisor's pid
    until_idle: bool = False
    number: int = 1  # the worker's slot, named in ps


def die_with_parent(parent: int) -> bool:
    """Have Linux send SIGTERM when the supervisor dies; ``False`` if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The supervisor may have died before the request: nobody would send that signal.
    return os.getppid() == parent


def run_worker(order: WorkerOrder, channel: Connection) -> None:
    """The worker process's entry point (multiprocessing's target)."""
    if not die_with_parent(order.parent):
        sys.exit(0)
    name_process(f"agent worker {order.number} (supervisor {order.parent})")
    logging.basicConfig(
        level=order.settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        code = asyncio.run(_work(order, channel))
    finally:
        channel.close()
    sys.exit(code)


async def _work(order: WorkerOrder, channel: Connection) -> int:
    stop = asyncio.Event()
    halted = threading.Event()  # the same, for the thread that opens the database

    def halt() -> None:
        stop.set()
        halted.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, halt)
    try:
        postroom = await asyncio.to_thread(_open, order.settings, halted)
    except PostroomError as exc:
        _tell(channel, Fatal(str(exc)))
        return FATAL_EXIT
    if postroom is None:  # stopped while waiting for the database
        return 0
    orphan = asyncio.create_task(_watch_parent(order.parent, stop))
    progress: asyncio.Task[None] | None = None
    try:
        agent = postroom.agent()
        if not _tell(channel, Started(agent.id)):
            halt()  # the supervisor is gone: the agent registers, stops and says so
        progress = asyncio.create_task(
            _report_progress(agent.id, agent.stats, channel, every=agent.beat_interval, stop=halt)
        )
        try:
            stats = await agent.run(stop=stop, until_idle=order.until_idle)
        except PostroomError as exc:  # DatabaseFatalError: a damaged database, a schema
            _tell(channel, Fatal(str(exc)))
            return FATAL_EXIT
        progress.cancel()
        _tell(channel, _stopped(agent.id, stats))
        return 0
    finally:
        if progress is not None:
            progress.cancel()
        orphan.cancel()
        postroom.close()


def _tell(channel: Connection, report: Report) -> bool:
    """Send ``report`` to the supervisor; ``False`` when it is gone (killed, say)."""
    try:
        channel.send(report)
    except OSError:  # BrokenPipeError, or a channel already closed
        return False
    return True


def _progress(agent_id: str, stats: AgentStats) -> Progress:
    return Progress(agent_id, stats.sent, stats.failed, stats.retried, stats.held)


def _stopped(agent_id: str, stats: AgentStats) -> Stopped:
    return Stopped(agent_id, stats.sent, stats.failed, stats.retried, stats.held)


async def _report_progress(
    agent_id: str,
    stats: AgentStats,
    channel: Connection,
    *,
    every: float,
    stop: Callable[[], None],
) -> None:
    """Send the agent's totals when they change, once a heartbeat interval."""
    last: Progress | None = None
    while True:
        await asyncio.sleep(every)
        now = _progress(agent_id, stats)
        if now == last:
            continue
        if not _tell(channel, now):
            stop()
            return
        last = now


def _open(settings: Settings, stop: threading.Event) -> Postroom | None:
    """Postroom on ``settings``, waiting while the database does not answer yet."""
    return open_when_the_database_answers(settings, pause=stop.wait)


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when the supervisor is gone (where PDEATHSIG does not exist or was missed)."""
    while not stop.is_set():
        await asyncio.sleep(ORPHAN_CHECK)
        if os.getppid() != parent:
            log.warning("supervisor %d is gone: stopping", parent)
            stop.set()
