"""The service's supervisor restarts what ends on its own; /healthz says what each task does."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.agent.health import Health
from postroom.devinbox.server import DevInbox
from postroom.devinbox.watch import InboxWatch, greets
from postroom.errors import PostroomError
from postroom.supervisor import Supervisor, TaskBoard, TaskState, TaskStatus
from tests.apikit import http, mounted, serve
from tests.conftest import make_settings
from tests.fakes import free_port


class FlakyWorker:
    """Fails at once on its first run (a fatal error), then works until asked to stop."""

    runs = 0

    def __init__(self) -> None:
        self.health = Health()

    async def run(self, *, stop: asyncio.Event) -> None:
        FlakyWorker.runs += 1
        if FlakyWorker.runs == 1:
            raise PostroomError("the database file is damaged")
        await stop.wait()


class ShortLivedWorker:
    """Returns without being asked to: the supervisor must notice and start another."""

    def __init__(self) -> None:
        self.health = Health()

    async def run(self, *, stop: asyncio.Event) -> None:
        return None


async def until(condition: Callable[[], bool], *, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_task_that_fails_is_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    FlakyWorker.runs = 0
    board = TaskBoard()

    async def main() -> list[TaskStatus]:
        supervisor = Supervisor(board, first=0.05, cap=0.1)
        supervisor.start("agent", FlakyWorker)
        await until(lambda: FlakyWorker.runs == 2, limit=10)
        await until(lambda: board.statuses()[0].state is TaskState.RUNNING, limit=10)
        running = board.statuses()
        await supervisor.stop(timeout=5)
        return running

    with caplog.at_level(logging.INFO, logger="postroom.service"):
        [status] = asyncio.run(main())
    assert (status.name, status.restarts, status.reason) == ("agent", 1, None)
    assert board.statuses()[0].state is TaskState.STOPPED
    [line] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.getMessage() == "agent stopped: the database file is damaged; starting it again"
    assert line.exc_info is None  # one line: a known fault needs no traceback


def test_a_task_that_returns_on_its_own_is_restarting_meanwhile() -> None:
    board = TaskBoard()

    async def main() -> TaskStatus:
        supervisor = Supervisor(board, first=30.0, cap=30.0)  # no second start in the test
        supervisor.start("inbox", ShortLivedWorker)
        await until(lambda: board.statuses()[0].state is TaskState.RESTARTING, limit=10)
        status = board.statuses()[0]
        await supervisor.stop(timeout=5)
        return status

    status = asyncio.run(main())
    assert status.restarts == 1
    assert status.reason == "ended without being asked to"


class DegradedWorker:
    """A worker whose database is away: alive, but it cannot work."""

    def __init__(self) -> None:
        self.health = Health()
        self.health.degrade("database unavailable: disk I/O error")

    async def run(self, *, stop: asyncio.Event) -> None:
        await stop.wait()


@contextmanager
def supervised(board: TaskBoard, make: Callable[[], DegradedWorker]) -> Iterator[None]:
    """A supervisor running in an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    supervisor = Supervisor(board)
    done = asyncio.Event()

    async def main() -> None:
        supervisor.start("agent", make)
        started.set()
        await done.wait()
        await supervisor.stop(timeout=5)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(10)
        assert not thread.is_alive()


def test_healthz_fails_while_a_task_cannot_work(tmp_path: Path) -> None:
    workers: list[DegradedWorker] = []

    def make() -> DegradedWorker:
        workers.append(DegradedWorker())
        return workers[-1]

    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        assert pr.background.statuses() == []
        with supervised(pr.background, make), serve(mounted(pr)) as base, http(base) as c:
            r = c.get("/api/v1/healthz")
            assert r.status_code == 503
            assert r.headers["Retry-After"].isdigit()
            assert r.json() == {
                "status": "degraded",
                "database": {"reachable": True, "error": None},
                "tasks": [
                    {
                        "name": "agent",
                        "state": "degraded",
                        "reason": "database unavailable: disk I/O error",
                        "consecutive_db_errors": 1,
                        "restarts": 0,
                    }
                ],
            }
            workers[0].health.recover()
            r = c.get("/api/v1/healthz")
            assert r.status_code == 200
            assert r.json()["status"] == "ok"
            assert r.json()["tasks"][0]["state"] == "running"


def test_the_dev_inbox_is_started_again_when_it_stops_answering(tmp_path: Path) -> None:
    inbox = DevInbox(tmp_path / "inbox", port=free_port())
    inbox.start()
    board = TaskBoard()

    async def main() -> TaskStatus:
        supervisor = Supervisor(board, first=0.05, cap=0.1)
        supervisor.start("dev inbox", lambda: InboxWatch(inbox, interval=0.1))
        await until(lambda: board.statuses()[0].state is TaskState.RUNNING, limit=10)
        await asyncio.to_thread(inbox.stop)  # the inbox dies under the service
        assert not greets(inbox.host, inbox.port)
        await until(lambda: board.statuses()[0].restarts >= 1, limit=20)
        await until(lambda: greets(inbox.host, inbox.port, timeout=1), limit=20)
        status = board.statuses()[0]
        await supervisor.stop(timeout=5)
        return status

    try:
        status = asyncio.run(main())
    finally:
        inbox.stop()
    assert status.restarts >= 1
    assert status.state is TaskState.RUNNING
