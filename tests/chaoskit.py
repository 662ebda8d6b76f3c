"""Shared parts of the fault-injection tests: processes, a scratch PostgreSQL, a small disk.

Everything here is real: agent and service processes started with the ``postroom``
console script, a PostgreSQL cluster of the test's own, a tmpfs mounted for the test.
Every wait is bounded.
"""

from __future__ import annotations

import bisect
import errno
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from postroom import Postroom
from postroom.outbox import OutboxStatus
from tests.conftest import IN_CI, TEST_KEY, make_settings
from tests.fakes import SmtpSink, free_port
from tests.test_multi_agent import agent_command

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
TRACEBACK = "Traceback (most recent call last)"


def report(filename: str, label: str, text: str) -> None:
    """Print ``text`` and keep it in ``test-artifacts/filename`` under ``label``.

    Each label holds one line there, replaced by the next run of the same test, so the
    file gathers the latest figures of every test that writes to it.
    """
    line = f"[{label}] {text}"
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / filename
    kept = [
        old
        for old in (path.read_text().splitlines() if path.exists() else [])
        if not old.startswith(f"[{label}] ")
    ]
    path.write_text("\n".join([*kept, line]) + "\n")


def wait_until(
    condition: Callable[[], bool],
    *,
    limit: float,
    what: str,
    seen: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` every 50 ms for at most ``limit`` seconds; fail naming ``what``.

    ``seen`` says, on failure, what there was instead.
    """
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= deadline:
            instead = f"; saw {seen()}" if seen is not None else ""
            pytest.fail(f"timed out after {limit:.0f} s waiting for {what}{instead}")
        time.sleep(0.05)


def process_env(database_url: str, **settings: object) -> dict[str, str]:
    """The environment of a ``postroom`` process: ours without POSTROOM_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(POSTROOM_DATABASE_URL=database_url, POSTROOM_SECRET_KEY=TEST_KEY)
    env.update({f"POSTROOM_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def agent_forever() -> list[str]:
    """``postroom agent run``, working until it is stopped."""
    return [c for c in agent_command() if c != "--until-idle"]


def serve_command(port: int) -> list[str]:
    """``postroom serve`` on loopback, with its embedded agent."""
    return [agent_command()[0], "serve", "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class Fleet:
    """Processes of one command, each in a numbered slot with its own log.

    A slot's process can be killed and started again; its log gathers every run.
    Leaving the block stops what still runs with SIGTERM (SIGKILL after 20 s).
    """

    command: list[str]
    env: dict[str, str]
    logs: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0

    def start(self, slot: int) -> subprocess.Popen[bytes]:
        assert slot not in self.procs or self.procs[slot].poll() is not None
        with self.log(slot).open("ab") as out:
            proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.logs
            )
        self.procs[slot] = proc
        return proc

    def log(self, slot: int) -> Path:
        return self.logs / f"process{slot}.log"

    def exited(self) -> dict[int, int]:
        """Slots whose process ended without being killed here, with the exit code."""
        return {s: code for s, p in self.procs.items() if (code := p.poll()) is not None}

    def kill(self, slot: int) -> None:
        """SIGKILL the slot's process: no chance to record anything or give leases back."""
        proc = self.procs[slot]
        code = proc.poll()
        assert code is None, f"process {slot} had already exited ({code}):\n{self.tail(slot)}"
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        self.kills += 1

    def stop(self) -> dict[int, int]:
        """SIGTERM every running process, wait for them; the exit codes by slot."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for slot, proc in self.procs.items():
            try:
                codes[slot] = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[slot] = proc.wait(timeout=10)
        return codes

    def log_size(self, slot: int) -> int:
        return self.log(slot).stat().st_size

    def logged_since(self, slot: int, size: int) -> list[str]:
        """The lines the slot's log gained since it was ``size`` bytes long."""
        with self.log(slot).open("rb") as log:
            log.seek(size)
            return [line for line in log.read().decode(errors="replace").splitlines() if line]

    def tail(self, slot: int, lines: int = 30) -> str:
        path = self.log(slot)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def assert_no_traceback(self) -> None:
        """No process printed a Python traceback (they run at the default log level)."""
        for slot in self.procs:
            text = self.log(slot).read_text(errors="replace")
            at = text.find(TRACEBACK)
            assert at < 0, (
                f"process {slot} printed a traceback:\n{text[max(0, at - 300) : at + 3000]}"
            )


@contextmanager
def fleet(command: list[str], env: dict[str, str], logs: Path) -> Iterator[Fleet]:
    """A :class:`Fleet`; whatever still runs when the block ends is stopped."""
    processes = Fleet(command, env, logs)
    try:
        yield processes
    finally:
        processes.stop()


@dataclass
class TimedSink(SmtpSink):
    """An :class:`SmtpSink` that also notes when each message arrived (``time.monotonic``)."""

    arrived: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply: str = await super().handle_DATA(server, session, envelope)
        with self.lock:
            now = time.monotonic()
            self.arrived.extend([now] * (len(self.received) - len(self.arrived)))
        return reply


def received_ids(sink: SmtpSink) -> list[str]:
    """The Message-IDs the sink received, in order of arrival (repeats included)."""
    with sink.lock:
        received = list(sink.received)
    return [str(r.message["Message-ID"]) for r in received]


def received_count(sink: SmtpSink) -> int:
    with sink.lock:
        return len(sink.received)


def wait_for_arrivals(sink: SmtpSink, count: int, *, limit: float, what: str) -> None:
    """Wait until the sink has received ``count`` messages in all."""
    wait_until(lambda: received_count(sink) >= count, limit=limit, what=what)


def duplicates_per_event(sink: TimedSink, events: Sequence[float], *, window: float) -> list[int]:
    """Repeat deliveries charged to the events (kills, terminations) at ``events`` times.

    An event can cause the repeat of a message delivered before it and not yet recorded,
    or of one the server was still taking in when it struck and finished up to ``window``
    seconds later. So a repeat is charged to the first event at or after the message's
    previous arrival less ``window``.
    """
    order = received_ids(sink)
    with sink.lock:
        arrived = list(sink.arrived)
    counts = [0] * len(events)
    last: dict[str, float] = {}
    for message_id, at in zip(order, arrived, strict=True):
        previous = last.get(message_id)
        if previous is not None:
            after = bisect.bisect_left(events, previous - window)
            counts[min(after, len(events) - 1)] += 1
        last[message_id] = at
    return counts


def sent_in_outbox(url: str) -> int:
    """How many emails the outbox at ``url`` records as sent (read on a fresh connection)."""
    with Postroom(make_settings(url)) as pr:
        return pr.outbox_counts().get(OutboxStatus.SENT, 0)


# --- the service's health ----------------------------------------------------------------


def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    """``GET /api/v1/healthz``: its status code and JSON body; ``None`` when nothing answers."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=10)
    except httpx.TransportError:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {"unparsed": response.text[:500]}
    return response.status_code, body if isinstance(body, dict) else {"unparsed": body}


def agent_task(body: dict[str, Any]) -> dict[str, Any]:
    """The ``agent`` entry of a health body's ``tasks`` (empty when there is none)."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        return {}
    found = [t for t in tasks if isinstance(t, dict) and t.get("name") == "agent"]
    return found[0] if found else {}


# --- a PostgreSQL cluster of the test's own ----------------------------------------------


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries under /usr/lib/postgresql, if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)] or [0],
    )
    return found[-1].parent if found else None


@dataclass
class ScratchPostgres:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port."""

    bin: Path
    data: Path
    port: int
    as_owner: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        assert result.returncode == 0, f"pg_ctl {args[0]} failed: {result.stderr or result.stdout}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("start", "-w", "-t", "60", "-l", str(self.data / "server.log"), "-o", options)

    def stop(self) -> None:
        """Stop at once (fast: sessions are terminated, as when a server goes down)."""
        self._ctl("stop", "-w", "-t", "60", "-m", "fast")


@contextmanager
def scratch_postgres() -> Iterator[ScratchPostgres]:
    """``initdb`` and start a cluster (as the ``postgres`` user when we are root); removed after.

    Skips when the server binaries are missing, except under CI, where they must be there.
    """
    binaries = postgres_bin()
    if binaries is None:
        reason = "PostgreSQL server binaries not found under /usr/lib/postgresql"
        if IN_CI:
            pytest.fail(f"{reason}; under CI this test must run")
        pytest.skip(reason)
    # initdb and the server refuse to run as root.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
    if as_owner:
        shutil.chown(data, user="postgres", group="postgres")
    cluster = ScratchPostgres(binaries, data, free_port(), as_owner)
    try:
        command = [*as_owner, str(binaries / "initdb"), "-D", str(data), "-A", "trust"]
        result = subprocess.run(
            [*command, "-U", "postgres", "--no-sync"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"initdb failed: {result.stderr or result.stdout}"
        cluster.start()
        yield cluster
    finally:
        with suppress(AssertionError, subprocess.TimeoutExpired):
            cluster._ctl("stop", "-w", "-t", "30", "-m", "immediate")
        shutil.rmtree(data, ignore_errors=True)


# --- a small filesystem ----------------------------------------------------------------


@contextmanager
def small_filesystem(directory: Path, *, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted on ``directory``; skips when mounting is not allowed.

    Under CI (run as root) mounting must work, so there it fails instead of skipping.
    """
    directory.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs"]
    try:
        result = subprocess.run(
            [*command, str(directory)], capture_output=True, text=True, timeout=30, check=False
        )
        problem = result.stderr.strip() if result.returncode else ""
    except FileNotFoundError:
        problem = "no mount command"
    if problem:
        reason = f"cannot mount a tmpfs of its own (needs root): {problem}"
        if IN_CI:
            pytest.fail(f"{reason}; under CI this test must run")
        pytest.skip(reason)
    try:
        yield directory
    finally:
        # Lazy: a process of a failed test may still hold a file open there.
        subprocess.run(
            ["umount", "-l", str(directory)], capture_output=True, timeout=30, check=False
        )


def fill_up(directory: Path) -> Path:
    """Write a filler file until the filesystem is full to the last block; its path."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = 1 << 20
    try:
        for _ in range(1_000_000):  # bounded: the filesystem is small
            try:
                os.write(fd, bytes(chunk))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if chunk == 1:
                    break
                chunk = max(1, chunk // 16)
    finally:
        os.close(fd)
    return path


def free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
