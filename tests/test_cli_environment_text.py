"""The real command line: POSTROOM_* values that are not UTF-8, and arguments of the wrong type.

Each is refused on one ``error: …`` line naming the variable or the argument (exit 2),
as a flag with the same bytes is, never with a traceback, a Typer box or the secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_KEY

SECRET_PART = "s3cr3t-key-material"


def run(args: list[bytes], *, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "postroom", *args],
        check=False,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8", **env},
        cwd=cwd,
        timeout=60,
    )
    return done.returncode, done.stderr.decode("utf-8", "backslashreplace")


def assert_one_line(code: int, stderr: str, *expected: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, line
    return line


def test_environment_values_that_are_not_utf8_are_refused_naming_the_variable(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    # What os.environ holds for bytes that are not UTF-8 (surrogateescape).
    key = os.fsdecode(SECRET_PART.encode() + b"\xff")
    code, stderr = run(
        [b"outbox", b"list"],
        env={"POSTROOM_DATABASE_URL": url, "POSTROOM_SECRET_KEY": key},
        cwd=tmp_path,
    )
    line = assert_one_line(code, stderr, "POSTROOM_SECRET_KEY is not valid Unicode", "0xFF")
    assert SECRET_PART not in line

    odd = os.fsdecode(b"sqlite:///" + os.fsencode(tmp_path) + b"/\xff.db")
    code, stderr = run(
        [b"outbox", b"list"],
        env={"POSTROOM_DATABASE_URL": odd, "POSTROOM_SECRET_KEY": TEST_KEY},
        cwd=tmp_path,
    )
    assert_one_line(code, stderr, "POSTROOM_DATABASE_URL is not valid Unicode", "0xFF")
    assert os.listdir(tmp_path) == []  # no database file made under the mangled name
    # The same bytes as a flag: refused the same way, naming the flag.
    code, stderr = run(
        [b"-d", os.fsencode(odd), b"outbox", b"list"],
        env={"POSTROOM_SECRET_KEY": TEST_KEY},
        cwd=tmp_path,
    )
    assert_one_line(code, stderr, "--database-url is not valid Unicode")


def test_an_argument_of_the_wrong_type_is_one_line_naming_it(tmp_path: Path) -> None:
    env = {
        "POSTROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'ok.db'}",
        "POSTROOM_SECRET_KEY": TEST_KEY,
    }
    for args in ([b"outbox", b"show", b"\xff"], [b"outbox", b"show", b"abc"]):
        code, stderr = run(args, env=env, cwd=tmp_path)
        assert_one_line(code, stderr, "OUTBOX_ID", "outbox show --help")
    code, stderr = run([b"outbox", b"show"], env=env, cwd=tmp_path)
    assert_one_line(code, stderr, "Missing argument", "OUTBOX_ID".lower())
    code, stderr = run([b"outbox", b"list", b"--no-such-flag"], env=env, cwd=tmp_path)
    assert_one_line(code, stderr, "No such option: --no-such-flag")
