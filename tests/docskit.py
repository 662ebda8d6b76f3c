"""Reading the documentation as a test reads it: code blocks, their marks, commands, links.

A page's blocks are fenced code blocks; an HTML comment ``<!-- docs: ... -->`` on the
lines just before a block marks it:

- ``fragment``: a YAML block that is part of a file: parsed, not applied;
- ``long-running``: every command of the block is started in the background and waited
  for (ready when it listens or says it runs), and stopped when the page ends;
- ``eventually``: a command whose output does not match yet is run again until it does
  (bounded), for what a background agent does in its own time;
- ``fails``: every command of the block must end with a non-zero exit code;
- ``skip: REASON``: not run, for what needs more than one machine (a PostgreSQL
  deployment).

``make run`` installs before it serves: the test reads its recipe from the Makefile and
starts that (``postroom serve --demo``) in its place. How commands run is described in
tests/docshell.py.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTUALLY_TIMEOUT = 30.0

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
_MARK = re.compile(r"^<!--\s*docs:\s*(?P<marks>.*?)\s*-->\s*$")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_BOX = re.compile(r"[\u2500-\u257f]")
SHELL_LANGS = frozenset({"console", "sh", "shell", "bash"})


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT)}:{line}"


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, first line (1-based), language, text and marks."""

    page: Path
    line: int
    lang: str
    text: str
    marks: dict[str, str]

    @property
    def where(self) -> str:
        return where(self.page, self.line)


@dataclass(frozen=True)
class Command:
    """One shell command of a block, with the output the page shows after it."""

    block: Block
    line: int
    text: str
    expected: str = ""

    @property
    def where(self) -> str:
        return where(self.block.page, self.line)


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, each with the marks written just before it."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(opening["indent"]) :])
            j += 1
        found.append(Block(page, i + 2, opening["lang"].lower(), "\n".join(body), _marks(lines, i)))
        i = j + 1
    return found


def _marks(lines: list[str], fence_index: int) -> dict[str, str]:
    marks: dict[str, str] = {}
    k = fence_index - 1
    while k >= 0 and (lines[k].strip() == "" or _MARK.match(lines[k].strip())):
        match = _MARK.match(lines[k].strip())
        if match:
            for mark in match["marks"].split(";"):
                name, _, value = mark.strip().partition(":")
                marks[name.strip()] = value.strip()
        k -= 1
    return marks


def commands(block: Block) -> list[Command]:
    """The commands of a shell block: ``$ `` lines in ``console``, every line in ``sh``."""
    prompted = block.lang == "console"
    result: list[Command] = []
    pending: list[str] = []
    start = 0
    output: list[str] = []

    def close() -> None:
        if pending:
            text = "\n".join(pending)
            result.append(Command(block, start, text, "\n".join(output).strip("\n")))

    lines = block.text.splitlines()
    continuing = False
    for offset, raw in enumerate(lines):
        number = block.line + offset
        if continuing:
            pending.append(raw)
            continuing = raw.rstrip().endswith("\\")
            continue
        if prompted and not raw.startswith("$ "):
            output.append(raw)
            continue
        text = raw[2:] if prompted else raw
        if not prompted and (not text.strip() or text.lstrip().startswith("#")):
            continue
        close()
        pending, output, start = [text], [], number
        continuing = text.rstrip().endswith("\\")
    close()
    return result


# -- links ---------------------------------------------------------------------------------


def _prose(page: Path) -> list[tuple[int, str]]:
    """The lines of ``page`` outside fenced code blocks and inline code, numbered."""
    kept: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening["fence"]
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            kept.append((number, re.sub(r"`[^`]*`", "", line)))
    return kept


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file or anchor does not exist, as 'page:line: link'."""
    broken: list[str] = []
    for number, line in _prose(page):
        for match in _LINK.finditer(line):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            if not destination.exists():
                broken.append(f"{where(page, number)}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in _slugs(destination):
                broken.append(f"{where(page, number)}: {target} (no such heading)")
    return broken


def _slugs(page: Path) -> set[str]:
    """The anchors GitHub makes for the headings of ``page``."""
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    fence: str | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening["fence"]
            continue
        if fence is not None:
            fence = None if line.strip() == fence else fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


# -- YAML ------------------------------------------------------------------------------------

CONFIG_SECTIONS = frozenset(
    {
        "operators",
        "auth_profiles",
        "keystores",
        "accounts",
        "correspondence",
        "case_types",
        "webhooks",
    }
)


def is_configuration(document: Any) -> bool:
    """A mapping whose top-level keys include a section ``postroom apply`` reads."""
    return isinstance(document, dict) and bool(CONFIG_SECTIONS & set(document))


def placeholders(text: str) -> dict[str, str]:
    """Values for the ``${NAME}`` references (without a default) that a YAML block holds."""
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)
    return {name: _placeholder(name) for name in names}


# A webhook secret has a format of its own (Standard Webhooks): 32 bytes of "docs".
_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"docs" * 8).decode("ascii")


def _placeholder(name: str) -> str:
    if "WEBHOOK" in name and "SECRET" in name:
        return _WEBHOOK_SECRET
    return f"{name.lower().replace('_', '-')}.example.com"


# -- output ----------------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(_BOX.sub(" ", text).split())


def output_matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` holds what the page shows, loosely.

    JSON is compared by structure: every key shown must be there with a matching value, a
    list must start with the items shown, and ``…`` in a string stands for any text.
    Other output matches when each line shown, with ``…`` for any text, appears in order
    (table borders and runs of spaces do not count).
    """
    if not expected.strip():
        return True
    try:
        shown = json.loads(expected)
    except ValueError:
        return _lines_match(expected, actual)
    try:
        return _json_matches(shown, json.loads(actual))
    except ValueError:
        return False


def _lines_match(expected: str, actual: str) -> bool:
    flat = _flat(actual)
    position = 0
    for line in expected.splitlines():
        for piece in (p.strip() for p in _flat(line).split("…")):
            if not piece:
                continue
            found = flat.find(piece, position)
            if found < 0:
                return False
            position = found + len(piece)
    return True


def _json_matches(shown: Any, actual: Any) -> bool:
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(
            k in actual and _json_matches(v, actual[k]) for k, v in shown.items()
        )
    if isinstance(shown, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(shown)
            and all(_json_matches(s, a) for s, a in zip(shown, actual, strict=False))
        )
    if isinstance(shown, str) and "…" in shown:
        pattern = ".*".join(re.escape(p) for p in shown.split("…"))
        return isinstance(actual, str) and re.fullmatch(pattern, actual, re.DOTALL) is not None
    return bool(shown == actual)


def shell_blocks(page: Path) -> Iterator[Block]:
    for block in blocks(page):
        if block.lang in SHELL_LANGS:
            yield block
