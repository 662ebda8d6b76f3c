"""A shell for the documentation's commands: a directory, an environment, background servers.

Commands run with bash in a directory of their own, holding a copy of ``examples/``, with
``POSTROOM_DATABASE_URL`` there and the ``postroom`` of this checkout first on ``PATH``.
Variables a command exports are kept for the next one. Some are pinned by the test, so
that what a page shows literally runs against the test's own servers on free loopback
ports: ``POSTROOM_URL``, ``POSTROOM_PORT`` and ``POSTROOM_DEMO_SMTP_PORT`` (a page's
``export POSTROOM_URL=http://127.0.0.1:8000`` runs, then the pinned value wins).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.docskit import ROOT, Command

# The interpreter running the tests is the one `postroom` is installed in (.venv/bin).
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], *, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Background:
    """A long-running command the session started, and its output file."""

    command: Command
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class Session:
    """A directory, an environment and the background processes of one page's commands."""

    home: Path
    pinned: dict[str, str] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)

    @classmethod
    def fresh(cls, home: Path) -> Session:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ROOT / "examples", home / "examples")
        port = free_port()
        pinned = {
            "POSTROOM_PORT": str(port),
            "POSTROOM_URL": f"http://127.0.0.1:{port}",
            "POSTROOM_DEMO_SMTP_PORT": str(free_port()),
        }
        session = cls(home, pinned)
        base = {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "POSTROOM_DATABASE_URL": f"sqlite:///{home / 'postroom.db'}",
            "POSTROOM_KEY_FILE": str(home / "postroom.key"),
            "POSTROOM_HOST": "127.0.0.1",
            "POSTROOM_POLL_INTERVAL": "0.2",
            "POSTROOM_HEARTBEAT_INTERVAL": "1",
        }
        (home / ".state").write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in base.items())
        )
        (home / ".cwd").write_text(str(home))
        return session

    def _script(self, text: str, *, keep_state: bool) -> str:
        pin = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.pinned.items())
        state, cwd = self.home / ".state", self.home / ".cwd"
        script = f'source {state}\n{pin}cd "$(cat {cwd})"\n{text}\n'
        if keep_state:
            script += f"__rc=$?\nexport -p > {state}.new && mv {state}.new {state}\n"
            script += f"pwd > {cwd}\nexit $__rc\n"
        return script

    def run(self, command: Command) -> subprocess.CompletedProcess[str]:
        """Run ``command`` to its end (bounded), keeping its exports and directory."""
        return subprocess.run(
            ["bash", "-c", self._script(command.text, keep_state=True)],
            check=False,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )

    def start(self, command: Command) -> Background:
        """Start ``command`` in the background and wait until it is ready."""
        text = command.text.rstrip().removesuffix("&").rstrip()
        log = self.home / f".background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", self._script(text, keep_state=False)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        running = Background(command, process, log)
        self.background.append(running)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command.where}: `{text}` ended with {process.returncode} before it was "
                    f"ready:\n{running.output()}"
                )
            return self._ready(text, running)

        wait_for(ready, limit=READY_TIMEOUT, what=f"{command.where}: `{text}`")
        return running

    def _ready(self, text: str, running: Background) -> bool:
        if "serve" in text or "make run" in text:
            return _answers(self.pinned["POSTROOM_URL"] + "/api/v1/healthz")
        if "dev-inbox" in text:
            return _listens(int(self.pinned["POSTROOM_DEMO_SMTP_PORT"]))
        if "agent run" in text:
            return " running" in running.output()
        return True

    def close(self) -> None:
        """Stop what the session started: SIGTERM to each process group, then SIGKILL."""
        for running in reversed(self.background):
            process = running.process
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        self.background.clear()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # 503 while a task starts is an answer
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
