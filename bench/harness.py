"""What every benchmark script shares: failures, deadlines, phases, scratch databases,
the counting SMTP sink in its own process, and profiling of every thread."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import faulthandler
import json
import os
import pstats
import pwd
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool
from tools import Postfix, ToolError, sink_count

import postroom

T = TypeVar("T")
SINK_SCRIPT = Path(__file__).with_name("sink.py")
POSTROOM_CODE = re.escape(str(Path(postroom.__file__).parent))


class BenchFailure(Exception):
    """The benchmark ran but its result cannot be trusted."""


class BenchTimeout(Exception):
    """The benchmark ran out of time."""


def guarded(name: str, action: Callable[[], T], *, timeout_note: str, watchdog: float) -> T:
    """``action()`` under a watchdog that dumps stacks and exits if it hangs past the
    cooperative deadlines; a timeout (exit 2) or failure (exit 1) is said in one line."""
    faulthandler.dump_traceback_later(watchdog, exit=True)
    try:
        return action()
    except BenchTimeout as exc:
        print(f"{name}: {exc} ({timeout_note})", file=sys.stderr)
        raise SystemExit(2) from None
    except (BenchFailure, ToolError) as exc:
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        faulthandler.cancel_dump_traceback_later()


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float

    def remaining(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BenchTimeout(f"timed out during {what}")
        return left

    def check(self, what: str) -> None:
        self.remaining(what)


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    count: int
    seconds: float
    unit: str = "msg"

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


@contextlib.contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on ``server_url``'s server, dropped afterwards."""
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"postroom_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# --- the SMTP sink ---------------------------------------------------------------------


class StdioProcess:
    """A helper script in its own process that answers one JSON line per request on its
    stdio; its first line gives its port."""

    def __init__(self, args: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
        self._what = what
        self._process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.port = int(self._read()["port"])

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise BenchFailure(f"the {self._what} has no pipes")
        return stdin, stdout

    def _read(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            raise BenchFailure(f"the {self._what} stopped (exit code {self._process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stats(self) -> dict[str, Any]:
        stdin = self._pipes()[0]
        stdin.write("stats\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipes()[0].close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._pipes()[1].close()


class Sink(StdioProcess):
    """The counting SMTP sink in its own process, spoken to over its stdio."""

    def __init__(self, max_seconds: float, data_delay: float = 0.0) -> None:
        args = [str(SINK_SCRIPT), "--max-seconds", f"{max_seconds:.0f}"]
        super().__init__([*args, "--data-delay", str(data_delay)], what="sink")


@contextlib.contextmanager
def running_sink(max_seconds: float, data_delay: float = 0.0) -> Iterator[Sink]:
    sink = Sink(max_seconds, data_delay)
    try:
        yield sink
    finally:
        sink.close()


# --- profiling -------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile of the calling thread and of every thread started while active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: list[cProfile.Profile] = []

    def _start(self, *_: object) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start)
        self._start()
        return self

    def __exit__(self, *_: object) -> None:
        threading.setprofile(None)
        self._profiles[0].disable()

    def stats(self) -> pstats.Stats:
        with self._lock:
            first, *rest = self._profiles
        return pstats.Stats(first, *rest)


@contextlib.contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[None]:
    """Profile the block into ``directory/name.prof`` and print its top functions."""
    if directory is None:
        yield
        return
    with ThreadProfiles() as profiles:
        yield
    directory.mkdir(parents=True, exist_ok=True)
    stats = profiles.stats()
    stats.dump_stats(directory / f"{name}.prof")
    print(f"\n--- {name}: Postroom functions, top 10 by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(POSTROOM_CODE, 10)
    print(f"--- {name}: all functions, top 10 by own time (idle threads wait in get/poll) ---")
    stats.sort_stats("tottime").print_stats(10)


# --- Postfix's smtp-sink -----------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink on a free loopback port, counting what it accepts (``-c``)."""

    def __init__(self, tools: Postfix, work: Path) -> None:
        self.port = _free_port()
        self._log = work / f"smtp-sink-{self.port}.out"
        user = pwd.getpwuid(os.getuid()).pw_name
        self._out = self._log.open("wb")
        self._process = subprocess.Popen(
            [str(tools.sink), "-c", "-u", user, f"127.0.0.1:{self.port}", "1024"],
            env=tools.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise BenchFailure("smtp-sink did not start: " + self._tail())
            time.sleep(0.05)

    def count(self) -> int:
        """The counter smtp-sink printed last; read from the log's tail, since the log
        grows by ~24 bytes a message and is read every few milliseconds while waiting."""
        self._out.flush()
        with self._log.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - 512))
            tail = log.read()
        finished = _FINISHED_COUNT.findall(tail)  # a line still being written is skipped
        return int(finished[-1]) if finished else sink_count(self._log.read_bytes())

    def wait_for(self, expected: int, *, limit: float = 30.0) -> int:
        """The counter once it reaches ``expected`` (smtp-sink prints it as it goes)."""
        deadline = time.monotonic() + limit
        while (seen := self.count()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen

    def cpu_seconds(self) -> float:
        """The CPU time smtp-sink has used so far (user and system)."""
        return process_cpu(self._process.pid)

    def _tail(self) -> str:
        return self._log.read_bytes()[-300:].decode(errors="replace")

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._out.close()


_FINISHED_COUNT = re.compile(rb"mesg=(\d+)\r")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """User and system CPU seconds of one process, from /proc (0 where it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces: the fields after it start past the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it, from the parent ids in /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(parents.get(current, []))
    return tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def smtp_sink(tools: Postfix, work: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(tools, work)
    try:
        yield sink
    finally:
        sink.close()


# --- agent processes ---------------------------------------------------------------------

STOP_WAIT = 30.0  # seconds a stopping Postroom process gets before it is killed


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A Postroom process writing to ``log``, stopped with SIGTERM (killed if it hangs)."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


AGENT_COMMAND = [str(Path(sys.executable).with_name("postroom")), "agent", "run"]


def agent_env(settings: dict[str, object]) -> dict[str, str]:
    """This process's environment without its POSTROOM_* variables, then ``settings`` as
    POSTROOM_* variables (``{"batch_size": 100}`` → ``POSTROOM_BATCH_SIZE=100``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update({f"POSTROOM_{name.upper()}": str(value) for name, value in settings.items()})
    return env
