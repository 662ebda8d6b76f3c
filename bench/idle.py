"""An idle agent's CPU: ``postroom agent run`` (default workers) with nothing to send.

One agent on SQLite and, when the server answers, one on PostgreSQL, run at the same
time on empty outboxes with the default poll interval and wake-up. Once every worker
has registered (and a short settling time), the CPU of each agent's process tree (the
supervisor, its workers and any helper process they started), from /proc, is summed
over ``--idle-seconds``: the figure is a percentage of one core. Target: below 1%.

    python bench/idle.py [--idle-seconds 60] [--scale-database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import harness
import scale
from delivery import CORES, workers_supported
from rich.console import Console

from postroom import Postroom, Settings

TARGET = 1.0  # % of a core
SETTLE = 3.0  # seconds after the last worker registered: start-up work is not idle work
START_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class Idle:
    """One idle agent's CPU over the measured seconds."""

    database: str
    processes: int
    cpu_seconds: float
    seconds: float
    parts: str  # the CPU seconds of each process, the supervisor first

    @property
    def percent(self) -> float:
        return self.cpu_seconds / self.seconds * 100


def role(pid: int, root: int) -> str:
    """What a process of an agent's tree is, from its command line."""
    if pid == root:
        return "supervisor" if workers_supported() else "agent"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "exited"
    return "worker" if b"spawn_main" in command else "helper"


def tree_cpu(pid: int) -> dict[int, float]:
    return {p: harness.process_cpu(p) for p in harness.process_tree(pid)}


@contextmanager
def idle_agent(url: str, logs: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``postroom agent run`` with its default workers, on an empty outbox at ``url``."""
    key = secrets.token_urlsafe(32)
    Postroom(Settings(database_url=url, secret_key=key)).close()  # the schema, nothing queued
    env = harness.agent_env({"database_url": url, "secret_key": key, "log_level": "WARNING"})
    with harness.running(harness.AGENT_COMMAND, env, logs / f"idle-{name}.log") as process:
        yield process


def wait_registered(url: str, process: subprocess.Popen[bytes], workers: int) -> None:
    deadline = harness.Deadline(time.monotonic() + START_WAIT)
    with Postroom(Settings(database_url=url, secret_key=secrets.token_urlsafe(32))) as postroom:
        while len(postroom.agents()) < workers:
            deadline.check("the idle agent's workers to start")
            if process.poll() is not None:
                raise harness.BenchFailure(f"the idle agent exited with {process.returncode}")
            time.sleep(0.1)


def run(*, seconds: float, server_url: str | None) -> list[Idle]:
    """Both idle agents measured over the same ``seconds``."""
    # An agent run without --workers starts one worker per core where it can.
    workers = CORES if workers_supported() else 1
    with tempfile.TemporaryDirectory(prefix="postroom-idle-") as scratch, ExitStack() as stack:
        logs = Path(scratch)
        urls = {"SQLite": f"sqlite:///{logs / 'idle.db'}"}
        if server_url:
            urls["PostgreSQL"] = stack.enter_context(harness.scratch_postgres(server_url))
        agents = {name: stack.enter_context(idle_agent(u, logs, name)) for name, u in urls.items()}
        for name, process in agents.items():
            wait_registered(urls[name], process, workers)
        time.sleep(SETTLE)
        before = {name: tree_cpu(p.pid) for name, p in agents.items()}
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        results = []
        for name, process in agents.items():
            if process.poll() is not None:
                raise harness.BenchFailure(f"the idle agent on {name} exited")
            after = tree_cpu(process.pid)
            each = {pid: cpu - before[name].get(pid, 0.0) for pid, cpu in after.items()}
            parts = " + ".join(f"{role(pid, process.pid)} {cpu:.2f}" for pid, cpu in each.items())
            results.append(Idle(name, len(after), sum(each.values()), elapsed, parts))
    return results


def section(args: argparse.Namespace, console: Console) -> str:
    """The idle rows as markdown (or why they did not run)."""
    head = "## An idle agent\n\n"
    if args.idle_seconds <= 0:
        return head + "Not run (`--idle-seconds 0`).\n\n"
    server: str | None = args.scale_database_url
    skipped = ""
    try:
        scale.require_server(args.scale_database_url)
    except harness.BenchFailure as exc:
        console.print(f"[yellow]idle agent on PostgreSQL not measured: {exc}[/]")
        server, skipped = None, f" PostgreSQL was not measured: {exc}."
    results = run(seconds=args.idle_seconds, server_url=server)
    rows = "\n".join(
        f"| {r.database} | {r.processes} | {r.cpu_seconds:.2f} ({r.parts}) | {r.percent:.2f}% | "
        f"{'met' if r.percent < TARGET else 'missed'} |"
        for r in results
    )
    for r in results:
        shown = f"{r.percent:.2f}% of a core, {r.processes} processes"
        console.print(f"idle agent, {r.database}: {shown}")
    return (
        head + "`postroom agent run` with its defaults (a worker per core, poll interval 1 s, "
        f"wake-up on) and nothing to send; CPU of the whole process tree from /proc over "
        f"{results[0].seconds:.0f} s, after the workers registered. Target: below "
        f"{TARGET:.0f}% of a core.{skipped}\n\n"
        "| database | processes | CPU seconds (each process) | % of a core | target |\n"
        "| --- | ---: | ---: | ---: | --- |\n" + rows + "\n\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--scale-database-url", default=scale.DEFAULT_SERVER)
    args = parser.parse_args(argv)
    console = Console()
    text = harness.guarded(
        "idle",
        lambda: section(args, console),
        timeout_note="",
        watchdog=args.idle_seconds + 2 * START_WAIT + 120,
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
