"""The documentation runs: every command, YAML example and relative link in README and docs/.

How blocks are marked and run is described in tests/docskit.py. A failure names the page,
the line and the command.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests import docskit
from tests.docskit import Block, Command, Session

PAGES = docskit.pages()
IDS = [str(p.relative_to(docskit.ROOT)) for p in PAGES]


def _make_run_standin() -> str:
    """What ``make run`` runs once set up, read from the Makefile, with the inbox on a free port."""
    makefile = (docskit.ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nrun:", 1)[1].splitlines()[1].strip()
    assert recipe == "$(BIN)/postroom serve --demo", recipe
    return 'postroom serve --demo --inbox-port "$POSTROOM_DEMO_SMTP_PORT"'


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page: Path) -> None:
    assert docskit.broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (docskit.ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert unlinked == []


def test_the_readme_stays_short() -> None:
    lines = (docskit.ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 130


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_yaml_blocks_parse_and_apply(page: Path, tmp_path: Path) -> None:
    for block in docskit.blocks(page):
        if block.lang not in {"yaml", "yml"}:
            continue
        try:
            document = yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            pytest.fail(f"{block.where}: YAML does not parse: {exc}")
        if "fragment" in block.marks or not docskit.is_configuration(document):
            continue
        _apply(block, tmp_path / f"line-{block.line}")


def _apply(block: Block, home: Path) -> None:
    session = Session.fresh(home)
    (home / "docs-example.yaml").write_text(block.text, encoding="utf-8")
    variables = docskit.placeholders(block.text)
    exports = "".join(f"export {k}={v}\n" for k, v in variables.items() if k not in os.environ)
    command = Command(block, block.line, exports + "postroom apply docs-example.yaml")
    done = session.run(command)
    assert done.returncode == 0, (
        f"{block.where}: `postroom apply` of this block failed ({done.returncode}):\n"
        f"{done.stdout}{done.stderr}"
    )


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_shell_blocks_run(page: Path, tmp_path: Path) -> None:
    runnable = [b for b in docskit.shell_blocks(page) if "skip" not in b.marks or _stands_in(b)]
    if not runnable:
        pytest.skip(f"{page.name} has no shell blocks")
    session = Session.fresh(tmp_path / "home")
    try:
        for block in runnable:
            for command in docskit.commands(block):
                _run(session, command)
    finally:
        session.close()


def _stands_in(block: Block) -> bool:
    """``make run``, skipped because it installs first; the test starts what it then runs."""
    return block.text.strip().removeprefix("$ ") == "make run"


def _run(session: Session, command: Command) -> None:
    block = command.block
    if _stands_in(block):
        session.start(Command(block, command.line, _make_run_standin()))
        return
    if "long-running" in block.marks or command.text.rstrip().endswith("&"):
        session.start(command)
        return
    deadline = time.monotonic() + docskit.EVENTUALLY_TIMEOUT
    while True:
        try:
            done = session.run(command)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command.where}: `{command.text}` did not end in time")
        output = done.stdout + done.stderr
        failed = done.returncode != 0
        if "fails" in block.marks:
            assert failed, f"{command.where}: `{command.text}` should fail but exited 0:\n{output}"
        else:
            assert not failed, (
                f"{command.where}: `{command.text}` exited {done.returncode}:\n{output}"
            )
        if docskit.output_matches(command.expected, done.stdout if _is_json(command) else output):
            return
        if "eventually" not in block.marks or time.monotonic() > deadline:
            pytest.fail(
                f"{command.where}: `{command.text}` printed\n{output}\n"
                f"which does not hold what the page shows:\n{command.expected}"
            )
        time.sleep(0.25)


def _is_json(command: Command) -> bool:
    return command.expected.lstrip().startswith(("{", "["))
