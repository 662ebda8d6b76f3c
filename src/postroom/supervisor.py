"""Supervision of the service's background tasks (the sender agent, the dev inbox...).

A task that ends when nobody asked it to is logged and started again after a capped,
jittered backoff. What each task is doing is kept on a :class:`TaskBoard`, which the
health check reads: nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postroom.agent.health import AgentState, Backoff, Health
from postroom.errors import PostroomError

log = logging.getLogger("postroom.service")

# A run that lasted this long was healthy: the next failure starts the backoff afresh.
HEALTHY_RUN = 60.0


class TaskState(StrEnum):
    """What a supervised task is doing."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # running, but cannot work (its reason says why)
    RESTARTING = "restarting"  # it ended unexpectedly; waiting to start it again
    STOPPED = "stopped"


# States in which the service cannot do the task's work: the health check fails.
NOT_WORKING = frozenset({TaskState.DEGRADED, TaskState.RESTARTING})


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One background task as the health check reports it."""

    name: str
    state: TaskState
    reason: str | None = None
    restarts: int = 0
    consecutive_db_errors: int = 0


class Worker(Protocol):
    """A long-running piece of the service: runs until ``stop`` is set."""

    async def run(self, *, stop: asyncio.Event) -> object: ...


class TaskBoard:
    """What the service's background tasks are doing, readable from any thread."""

    def __init__(self) -> None:
        self._readers: dict[str, Callable[[], TaskStatus]] = {}

    def publish(self, name: str, read: Callable[[], TaskStatus]) -> None:
        self._readers[name] = read

    def statuses(self) -> list[TaskStatus]:
        return [read() for read in list(self._readers.values())]


class _Supervised:
    """One task, its current worker and its restarts."""

    def __init__(self, name: str, make: Callable[[], Worker], backoff: Backoff) -> None:
        self.name = name
        self.make = make
        self.backoff = backoff
        self.state = TaskState.STARTING
        self.reason: str | None = None
        self.restarts = 0
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None

    def status(self) -> TaskStatus:
        health = getattr(self.worker, "health", None)
        if (
            self.state is TaskState.RUNNING
            and isinstance(health, Health)
            and health.state is AgentState.DEGRADED
        ):
            return TaskStatus(
                self.name, TaskState.DEGRADED, health.reason, self.restarts, health.db_errors
            )
        errors = health.db_errors if isinstance(health, Health) else 0
        return TaskStatus(self.name, self.state, self.reason, self.restarts, errors)


class Supervisor:
    """Runs workers as tasks of the current event loop and restarts those that end."""

    def __init__(self, board: TaskBoard, *, first: float = 0.5, cap: float = 30.0) -> None:
        self._board = board
        self._first, self._cap = first, cap
        self._stop = asyncio.Event()
        self._tasks: list[_Supervised] = []

    def start(self, name: str, make: Callable[[], Worker]) -> None:
        """Run ``make()``'s worker now, and a new one each time one ends unexpectedly."""
        entry = _Supervised(name, make, Backoff(first=self._first, cap=self._cap))
        self._tasks.append(entry)
        self._board.publish(name, entry.status)
        entry.task = asyncio.create_task(self._keep(entry), name=f"supervised {name}")

    async def _keep(self, entry: _Supervised) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                entry.worker = entry.make()
                entry.state, entry.reason = TaskState.RUNNING, None
                await entry.worker.run(stop=self._stop)
                if self._stop.is_set():
                    break
                entry.reason = "ended without being asked to"
                log.error("%s %s: starting it again", entry.name, entry.reason)
            except asyncio.CancelledError:
                raise
            except PostroomError as exc:
                entry.reason = str(exc)
                log.error("%s stopped: %s; starting it again", entry.name, exc)
            except Exception as exc:
                # A bug: the traceback is what its fix needs.
                entry.reason = f"unexpected {type(exc).__name__}: {exc}"
                log.exception("%s crashed; starting it again", entry.name)
            if time.monotonic() - began > HEALTHY_RUN:
                entry.backoff.reset()
            entry.state = TaskState.RESTARTING
            entry.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), entry.backoff.next_delay())
        entry.state = TaskState.STOPPED

    async def stop(self, *, timeout: float) -> None:
        """Ask every worker to stop; cancel those still running after ``timeout``."""
        self._stop.set()
        tasks = [e.task for e in self._tasks if e.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            log.warning("%s did not stop in time; cancelled", task.get_name())
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*late, return_exceptions=True)
