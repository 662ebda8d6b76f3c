"""``postroom agent run --workers N``: agent processes under a supervisor, as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from postroom import Postroom
from postroom.agent.recording import AgentStats
from postroom.agent.registry import AgentInfo
from postroom.agent.workers import Workers, usable_cores
from postroom.outbox import OutboxStatus
from tests.chaoskit import agent_task, healthz
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import SmtpSink, free_port, smtp_server

pytestmark = pytest.mark.slow

SENDER = "sender@example.com"
DEADLINE = 40.0  # generous: two workers each import the whole package on a loaded machine
T = TypeVar("T")


def postroom_executable() -> Path:
    exe = Path(sys.executable).parent / "postroom"
    assert exe.exists(), f"console script not installed at {exe}"
    return exe


def queue(pr: Postroom, count: int, *, start: int = 0) -> set[str]:
    """Queue ``count`` emails; returns their Message-IDs."""
    ids = [
        pr.send(to=[f"user{i}@example.net"], subject=f"n{i}", body="Body.", class_name="Default")
        for i in range(start, start + count)
    ]
    return {pr.outbox_entry(i).message_id for i in ids}


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(
        POSTROOM_DATABASE_URL=database_url,
        POSTROOM_SECRET_KEY=TEST_KEY,
        POSTROOM_POLL_INTERVAL="0.05",
        POSTROOM_HEARTBEAT_INTERVAL="0.2",
        POSTROOM_BATCH_SIZE="10",
        POSTROOM_SMTP_TIMEOUT="10",
        **extra,
    )
    return env


@contextmanager
def supervisor(
    database_url: str, log: Path, *args: str, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``postroom agent run --workers …`` as a child process; killed on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(postroom_executable()), "agent", "run", *args],
            env=environment(database_url, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def wait_for(what: str, probe: Callable[[], T | None], *, log: Path) -> T:
    """Poll ``probe`` until it returns something truthy, within :data:`DEADLINE`."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; output:\n{log.read_text(errors='replace')}")


def running(pr: Postroom, *, besides: int) -> list[AgentInfo]:
    """Agents running now in processes other than ``besides`` (the supervisor)."""
    return [a for a in pr.agents() if a.state == "running" and a.pid != besides]


def two_workers(pr: Postroom, proc: subprocess.Popen[bytes], log: Path) -> list[AgentInfo]:
    """The supervisor's two workers, once both have registered."""

    def both() -> list[AgentInfo] | None:
        workers = running(pr, besides=proc.pid)
        return workers if len(workers) == 2 else None

    return wait_for("two workers", both, log=log)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, *, log: Path) -> None:
    wait_for(f"worker {pid} to be gone", lambda: not alive(pid), log=log)


def assert_each_once(sink: SmtpSink, message_ids: set[str]) -> None:
    received = Counter(r.message["Message-ID"] for r in sink.received)
    assert set(received) == message_ids
    assert max(received.values()) == 1, [m for m, n in received.items() if n > 1]


@pytest.fixture
def sink_port(postroom: Postroom) -> Iterator[tuple[SmtpSink, int]]:
    # A little time per message, so that both workers get a share of the queue.
    sink = SmtpSink(data_delay=0.002)
    with smtp_server(sink) as srv:
        postroom.apply(
            {
                "accounts": [
                    {
                        "name": "Default",
                        "address": SENDER,
                        "host": "127.0.0.1",
                        "port": srv.port,
                        "security": "none",
                    }
                ]
            }
        )
        yield sink, srv.port


def test_two_workers_deliver_each_email_once_and_stop_on_sigterm(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, _ = sink_port
    message_ids = queue(postroom, 300)
    log = tmp_path / "agent.log"
    with supervisor(database_url, log, "--workers", "2") as proc:
        workers = two_workers(postroom, proc, log)
        # Named in ps and top, each with its slot and supervisor.
        titles = sorted(
            Path(f"/proc/{w.pid}/cmdline").read_bytes().split(b"\0")[0].decode() for w in workers
        )
        assert titles == [f"postroom: agent worker {n} (supervisor {proc.pid})" for n in (1, 2)], (
            titles
        )
        wait_for(
            "every email sent",
            lambda: postroom.outbox_counts()[OutboxStatus.SENT] == len(message_ids),
            log=log,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    assert_each_once(sink, message_ids)
    output = log.read_text()
    assert "running 2 agent workers" in output
    assert "2 agent workers stopped: 300 sent, 0 failed, 0 to retry, 0 held" in output
    for w in workers:
        assert f"agent {w.id} running on" in output
        assert f"agent {w.id} stopped:" in output
        wait_gone(w.pid, log=log)
    states = {a.id: a.state for a in postroom.agents()}
    assert [states[w.id] for w in workers] == ["stopped", "stopped"]
    assert "Traceback" not in output


def test_a_killed_worker_is_started_again(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, _ = sink_port
    log = tmp_path / "agent.log"
    with supervisor(database_url, log, "--workers", "2") as proc:
        first = two_workers(postroom, proc, log)
        victim = first[0]
        os.kill(victim.pid, signal.SIGKILL)

        def replaced() -> list[AgentInfo] | None:
            now = running(postroom, besides=proc.pid)
            new = [a for a in now if a.id not in {w.id for w in first}]
            return new if len(now) == 2 and new else None

        [newcomer] = wait_for("the killed worker's successor", replaced, log=log)
        assert newcomer.pid != victim.pid
        message_ids = queue(postroom, 40)
        wait_for(
            "the emails queued afterwards to be sent",
            lambda: postroom.outbox_counts()[OutboxStatus.SENT] == len(message_ids),
            log=log,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    assert_each_once(sink, message_ids)
    output = log.read_text()
    assert f"(pid {victim.pid}) was killed by SIGKILL unexpectedly; starting it again" in output
    assert f"agent {newcomer.id} running on" in output
    # The killed worker's totals never came: the summary says its last report stands.
    assert "one worker's totals are as of its last report" in output


def test_until_idle_sums_the_workers_totals(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, _ = sink_port
    message_ids = queue(postroom, 120)
    log = tmp_path / "agent.log"
    with supervisor(database_url, log, "--workers", "2", "--until-idle") as proc:
        assert proc.wait(timeout=DEADLINE * 2) == 0
    assert_each_once(sink, message_ids)
    output = log.read_text()
    assert output.count(" stopped: ") == 3  # each worker's line, then the total
    assert "2 agent workers stopped: 120 sent, 0 failed, 0 to retry, 0 held" in output
    assert {a.state for a in postroom.agents()} == {"stopped"}


def test_workers_of_a_supervisor_killed_with_sigkill_stop_by_themselves(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    with supervisor(database_url, log, "--workers", "2") as proc:
        workers = two_workers(postroom, proc, log)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    for w in workers:
        wait_gone(w.pid, log=log)
    # They were told (SIGTERM on their parent's death) and stopped as agents do.
    states = {a.id: a.state for a in postroom.agents()}
    assert [states[w.id] for w in workers] == ["stopped", "stopped"]
    # Their final reports had nobody to go to: that is not an error.
    assert "Traceback" not in log.read_text()


def test_workers_default_to_the_usable_cores(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    with supervisor(database_url, log, "--until-idle") as proc:
        assert proc.wait(timeout=DEADLINE * 2) == 0
    cores = usable_cores()
    output = log.read_text()
    if cores > 1:
        assert f"running {cores} agent workers" in output
    else:
        assert "supervisor" not in output


def test_a_database_that_cannot_work_is_one_line_not_a_restart_loop(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    url = f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}"
    with supervisor(url, log, "--workers", "2") as proc:
        code = proc.wait(timeout=DEADLINE)
    output = log.read_text()
    assert code != 0
    assert "error:" in output
    assert "Traceback" not in output
    assert "starting it again" not in output


def test_serve_runs_its_agent_as_workers_and_shows_them_in_the_health_check(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, _ = sink_port
    log = tmp_path / "serve.log"
    port = free_port()
    command = [str(postroom_executable()), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--workers", "2"],
            env=environment(database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        workers = two_workers(postroom, proc, log)

        def agent_health() -> dict[str, object] | None:
            answer = healthz(port)
            task = agent_task(answer[1]) if answer else {}
            return task if task.get("reason") == "2 of 2 workers running" else None

        task = wait_for("the health check to show the workers", agent_health, log=log)
        assert (task["state"], task["restarts"]) == ("running", 0)
        message_ids = queue(postroom, 30)
        wait_for(
            "every email sent",
            lambda: postroom.outbox_counts()[OutboxStatus.SENT] == len(message_ids),
            log=log,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert_each_once(sink, message_ids)
    assert "agent: 2 worker processes" in log.read_text()
    for w in workers:
        wait_gone(w.pid, log=log)
    states = {a.id: a.state for a in postroom.agents()}
    assert [states[w.id] for w in workers] == ["stopped", "stopped"]


def test_a_fatal_fault_in_a_worker_stops_them_all_without_restarts(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not a database file" * 100)
    said: list[str] = []
    workers = Workers(make_settings(f"sqlite:///{damaged}"), count=2, say=said.append)

    async def run() -> None:
        await asyncio.wait_for(workers.run(stop=asyncio.Event()), DEADLINE)

    asyncio.run(run())
    assert workers.fatal is not None
    assert "damaged" in workers.fatal
    assert workers.status().state == "degraded"
    assert workers.status().restarts == 0
    assert workers.pids() == []
    assert said == []  # no worker got as far as starting an agent


async def until(what: str, probe: Callable[[], object]) -> None:
    """Poll ``probe`` within :data:`DEADLINE` without blocking the event loop."""
    deadline = time.monotonic() + DEADLINE
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_killed_workers_totals_are_counted_as_last_reported(
    postroom: Postroom, database_url: str, sink_port: tuple[SmtpSink, int]
) -> None:
    sink, _ = sink_port
    message_ids = queue(postroom, 100)
    settings = make_settings(database_url, heartbeat_interval=0.2, batch_size=10)
    workers = Workers(settings, count=2)

    def victim() -> AgentInfo | None:
        """A running worker whose heartbeat shows it sent some of the emails."""
        mine = [a for a in postroom.agents() if a.state == "running" and a.pid in workers.pids()]
        return next((a for a in mine if a.sent > 0), None)

    async def run() -> AgentStats:
        stop = asyncio.Event()
        task = asyncio.create_task(workers.run(stop=stop))
        try:
            await until("every email reported", lambda: workers.progress().sent == 100)
            await until("a worker that sent some", victim)
            killed = victim()
            assert killed is not None
            os.kill(killed.pid, signal.SIGKILL)
            await until("the killed worker's end", lambda: workers.partial == 1)
        finally:
            stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    stats = asyncio.run(run())
    assert_each_once(sink, message_ids)
    assert (stats.sent, stats.failed, workers.partial) == (100, 0, 1)


SITECUSTOMIZE = """
import sys


class _RefuseInWorkers:
    \"\"\"An import that fails in spawned processes only: a worker that can never start.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "postroom.agent.worker" and "--multiprocessing-fork" in sys.orig_argv:
            raise ImportError("postroom.agent.worker cannot be imported here")
        return None


sys.meta_path.insert(0, _RefuseInWorkers())
"""


def test_a_worker_that_never_starts_stops_the_supervisor(
    sqlite_postroom: Postroom, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "agent.log"
    url = sqlite_postroom.settings.database_url
    with supervisor(url, log, "--workers", "2", PYTHONPATH=str(site)) as proc:
        code = proc.wait(timeout=DEADLINE * 2)
    output = log.read_text(errors="replace")
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "exited with code 1 before its agent started, 3 times in a row" in errors[0]
    assert " sent, " not in output  # no totals: the supervisor did not stop as asked


def test_serve_refuses_no_agent_with_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'postroom.db'}"
    command = [str(postroom_executable()), "serve", "--no-agent", "--workers", "2"]
    done = subprocess.run(
        [*command, "--port", str(free_port())],
        env=environment(url),
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, output
    assert len(output.strip().splitlines()) == 1, output
    assert "--no-agent" in output
    assert "--workers" in output
    assert not (tmp_path / "postroom.db").exists()  # refused before anything was opened
