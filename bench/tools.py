"""What the benchmark measures against, installed on first use into ``bench/.work/``.

* Postfix's ``smtp-sink`` and ``smtp-source``: the binaries and their shared libraries
  are unpacked from Debian's ``postfix`` package (``apt-get download`` + ``dpkg-deb -x``);
  the package is never installed, so no mail service is configured or started.
* django-post-office, the Python peer, in a virtual environment of its own, so that
  Django never enters Postroom's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path

WORK = Path(__file__).with_name(".work")
TOOLS = WORK / "postfix"
PEER_VENV = WORK / "dpo-venv"
PEER_REQUIREMENTS = ("django>=5.2,<6", "django-post-office==3.12.0")
PLOT_VENV = WORK / "plot-venv"
PLOT_REQUIREMENTS = ("matplotlib>=3.8,<4",)
INSTALL_TIMEOUT = 600.0


class ToolError(Exception):
    """A tool the benchmark needs could not be installed."""


@dataclass(frozen=True, slots=True)
class Postfix:
    """Where the unpacked ``smtp-sink`` and ``smtp-source`` are, and how to run them."""

    sink: Path
    source: Path
    libraries: Path

    @property
    def env(self) -> dict[str, str]:
        # The binaries link Postfix's private libraries, unpacked beside them.
        return {**os.environ, "LD_LIBRARY_PATH": str(self.libraries)}


def postfix_tools() -> Postfix:
    """``smtp-sink`` and ``smtp-source``, unpacked from Debian's package on first use."""
    tools = Postfix(TOOLS / "smtp-sink", TOOLS / "smtp-source", TOOLS / "lib")
    if tools.sink.exists() and tools.source.exists():
        return tools
    for command in ("apt-get", "dpkg-deb"):
        if shutil.which(command) is None:
            raise ToolError(f"{command} is needed to unpack Postfix's smtp-sink (Debian only)")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        try:
            _run(["apt-get", "download", "postfix"], cwd=work, what="apt-get download postfix")
        except ToolError:
            if os.geteuid() != 0:
                raise
            # A fresh machine may have no package lists yet: fetch them once, then retry.
            _run(["apt-get", "update", "-qq"], cwd=work, what="apt-get update")
            _run(["apt-get", "download", "postfix"], cwd=work, what="apt-get download postfix")
        [package] = work.glob("postfix_*.deb")
        _run(["dpkg-deb", "-x", str(package), str(work / "x")], cwd=work, what="dpkg-deb -x")
        TOOLS.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work / "x/usr/lib/postfix", tools.libraries, dirs_exist_ok=True)
        for binary in (tools.sink, tools.source):
            shutil.copy2(work / "x/usr/sbin" / binary.name, binary)
    return tools


def peer_python() -> Path:
    """The interpreter of django-post-office's own virtual environment (made on first use)."""
    return _venv_python(PEER_VENV, PEER_REQUIREMENTS, what="django-post-office")


def plot_python() -> Path:
    """An interpreter with matplotlib, for the chart (kept out of Postroom's environment)."""
    return _venv_python(PLOT_VENV, PLOT_REQUIREMENTS, what="matplotlib")


def _venv_python(folder: Path, requirements: tuple[str, ...], *, what: str) -> Path:
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.exists() and marker.read_text() == "\n".join(requirements):
        return python
    WORK.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    _run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        cwd=WORK,
        what=f"pip install {what}",
    )
    marker.write_text("\n".join(requirements))
    return python


_COUNTER = re.compile(rb"mesg=(\d+)")


def sink_count(output: bytes) -> int:
    """The last ``mesg=N`` that ``smtp-sink -c`` printed (it rewrites one line with CR)."""
    counts = _COUNTER.findall(output)
    return int(counts[-1]) if counts else 0


def _run(command: list[str], *, cwd: Path, what: str) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=INSTALL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ToolError(f"{what} failed: {detail[0]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{what} failed: {exc}") from None


if __name__ == "__main__":
    found = postfix_tools()
    print(f"smtp-sink: {found.sink}\nsmtp-source: {found.source}")
    print(f"django-post-office: {peer_python()}", file=sys.stdout)
    print(f"matplotlib: {plot_python()}", file=sys.stdout)
