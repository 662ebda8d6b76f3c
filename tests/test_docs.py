"""The documentation runs: every command, YAML example and relative link in README and docs/.

How blocks are marked and run is described in tests/docskit.py. A failure names the page,
the line and the command. Pages run side by side (each in a directory of its own, with its
own servers on free ports), as most of their time is spent waiting on servers and agents.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import typer.main
import yaml

from postroom.cli import app
from postroom.settings import Settings
from tests import docskit
from tests.docshell import Session
from tests.docskit import Block, Command


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(docskit.ROOT)) for p in pages]


PAGES = docskit.pages()
IDS = _ids(PAGES)
YAML_LANGS = frozenset({"yaml", "yml"})
WITH_YAML = [p for p in PAGES if any(b.lang in YAML_LANGS for b in docskit.blocks(p))]
WITH_SHELL = [p for p in PAGES if any(True for _ in docskit.shell_blocks(p))]
NOTHING_TO_RUN = "nothing to run"
Outcomes = dict[Path, str | None]


def _make_run_standin() -> str:
    """What ``make run`` runs once set up, read from the Makefile, with the inbox on a free port."""
    makefile = (docskit.ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nrun:", 1)[1].splitlines()[1].strip()
    assert recipe == "$(BIN)/postroom serve --demo", recipe
    return 'postroom serve --demo --inbox-port "$POSTROOM_DEMO_SMTP_PORT"'


def _each_page(pages: list[Path], run: Callable[[Path, Path], str | None], base: Path) -> Outcomes:
    """``run(page, directory)`` for every page at once: None, a failure, or NOTHING_TO_RUN."""

    def guarded(page: Path) -> str | None:
        try:
            return run(page, base / page.stem)
        except AssertionError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=len(pages)) as pool:
        outcomes = list(pool.map(guarded, pages))
    return dict(zip(pages, outcomes, strict=True))


def _report(outcome: str | None) -> None:
    if outcome == NOTHING_TO_RUN:
        pytest.skip(NOTHING_TO_RUN)
    if outcome is not None:
        pytest.fail(outcome, pytrace=False)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page: Path) -> None:
    assert docskit.broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (docskit.ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert unlinked == []


def test_the_readme_stays_short() -> None:
    lines = (docskit.ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 140


# -- YAML ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return _each_page(WITH_YAML, _apply_page, tmp_path_factory.mktemp("yaml"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", WITH_YAML, ids=_ids(WITH_YAML))
def test_yaml_blocks_parse_and_apply(page: Path, applied: Outcomes) -> None:
    _report(applied[page])


def _apply_page(page: Path, home: Path) -> str | None:
    for block in docskit.blocks(page):
        if block.lang not in YAML_LANGS:
            continue
        try:
            document = yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            return f"{block.where}: YAML does not parse: {exc}"
        if "fragment" in block.marks or not docskit.is_configuration(document):
            continue
        _apply(block, home / f"line-{block.line}")
    return None


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


# -- shell -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return _each_page(WITH_SHELL, _run_page, tmp_path_factory.mktemp("shell"))


# The first test of each kind waits for every page; a loaded 2-core machine needs headroom.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", WITH_SHELL, ids=_ids(WITH_SHELL))
def test_shell_blocks_run(page: Path, ran: Outcomes) -> None:
    _report(ran[page])


def _run_page(page: Path, home: Path) -> str | None:
    runnable = [b for b in docskit.shell_blocks(page) if "skip" not in b.marks or _stands_in(b)]
    if not runnable:
        return NOTHING_TO_RUN
    session = Session.fresh(home)
    try:
        for block in runnable:
            for command in docskit.commands(block):
                _run(session, command)
    finally:
        session.close()
    return None


def _stands_in(block: Block) -> bool:
    """``make run``, which installs first; the test starts what it then runs."""
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
            raise AssertionError(f"{command.where}: `{command.text}` did not end in time") from None
        output = done.stdout + done.stderr
        if "fails" in block.marks:
            assert done.returncode != 0, (
                f"{command.where}: `{command.text}` should fail but exited 0:\n{output}"
            )
        else:
            assert done.returncode == 0, (
                f"{command.where}: `{command.text}` exited {done.returncode}:\n{output}"
            )
        shown = done.stdout if _is_json(command) else output
        if docskit.output_matches(command.expected, shown):
            return
        if "eventually" not in block.marks or time.monotonic() > deadline:
            raise AssertionError(
                f"{command.where}: `{command.text}` printed\n{output}\n"
                f"which does not hold what the page shows:\n{command.expected}"
            )
        time.sleep(0.25)  # polling a background agent's progress, bounded by the deadline


def _is_json(command: Command) -> bool:
    return command.expected.lstrip().startswith(("{", "["))


# -- reference pages -------------------------------------------------------------------------


def test_every_setting_is_in_the_settings_table() -> None:
    page = (docskit.ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"`POSTROOM_{n.upper()}`" not in page]
    assert missing == []


def test_every_command_is_in_the_cli_reference() -> None:
    rows = [
        line
        for line in (docskit.ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    missing = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        for sub in getattr(command, "commands", None) or [""]:
            if not any(f"`{name}" in row and sub in row for row in rows):
                missing.append(f"{name} {sub}".strip())
    assert missing == []
