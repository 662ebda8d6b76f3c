"""What changed between two versions of a correspondence, part by part.

Each part (subject, html, text, language, each translation's parts, each image) is
compared on its own. A part's changes come two ways: unified diff text (``difflib``, as
``diff -u`` prints it) and numbered lines a page can show side by side or coloured.
HTML written on one long line is broken after its tags before comparing, so a changed
word shows as one changed line rather than the whole document.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from postroom.correspondence.models import Correspondence
from postroom.correspondence.store import image_refs
from postroom.diffing import comparable, too_different

CONTEXT = 3  # unchanged lines shown around a change, as diff -u
LONG_LINE = 160  # an HTML line longer than this is compared tag by tag
_BETWEEN_TAGS = re.compile(r"(?<=>)(?=\s*<)")
TEXT_PARTS = ("subject", "html", "text")


class LineKind(StrEnum):
    """A line of a part's diff: kept, removed (old only), added (new only), or a hunk header."""

    SAME = "same"
    REMOVED = "removed"
    ADDED = "added"
    HUNK = "hunk"


class PartChange(StrEnum):
    """How a part differs: changed in place, only in the new version, only in the old."""

    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One line of a part's diff, with its line numbers in the old and the new text."""

    kind: LineKind
    text: str
    old: int | None = None
    new: int | None = None


@dataclass(frozen=True, slots=True)
class PartDiff:
    """The changes of one part, e.g. ``html`` or ``translations.de.subject``."""

    part: str
    change: PartChange
    unified: str
    lines: tuple[DiffLine, ...]


@dataclass(frozen=True, slots=True)
class ImageChange:
    """An image added, removed or replaced (by its content id); refs as the store keeps them."""

    content_id: str
    change: PartChange
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None

    @property
    def summary(self) -> str:
        def said(ref: Mapping[str, Any] | None) -> str:
            if ref is None:
                return "(none)"
            return (
                f"{ref['filename']} ({ref['content_type']}, {ref['size']} bytes, "
                f"sha256 {str(ref['sha256'])[:12]})"
            )

        return f"images.{self.content_id}: {self.change} {said(self.old)} -> {said(self.new)}"


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Every part that differs between version ``old`` and version ``new`` of ``name``."""

    name: str
    old: int
    new: int
    parts: tuple[PartDiff, ...]
    images: tuple[ImageChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.parts or self.images)

    @property
    def unified(self) -> str:
        """The whole diff as text: each part's unified diff, then the images."""
        text = "".join(p.unified for p in self.parts)
        return text + "".join(f"{image.summary}\n" for image in self.images)


def _lines(text: str | None, *, html: bool) -> list[str]:
    if text is None:
        return []
    lines = text.splitlines()
    if not html:
        return lines
    split: list[str] = []
    for line in lines:
        split.extend(_BETWEEN_TAGS.split(line) if len(line) > LONG_LINE else [line])
    return split


def _hunk_lines(old: list[str], new: list[str]) -> tuple[DiffLine, ...]:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    found: list[DiffLine] = []
    for group in matcher.get_grouped_opcodes(CONTEXT):
        first, last = group[0], group[-1]
        found.append(
            DiffLine(
                LineKind.HUNK,
                f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@",
            )
        )
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                found.extend(
                    DiffLine(LineKind.SAME, old[i], old=i + 1, new=j + 1)
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                )
                continue
            found.extend(DiffLine(LineKind.REMOVED, old[i], old=i + 1) for i in range(i1, i2))
            found.extend(DiffLine(LineKind.ADDED, new[j], new=j + 1) for j in range(j1, j2))
    return tuple(found)


def part_diff(
    part: str, old: str | None, new: str | None, *, labels: tuple[str, str]
) -> PartDiff | None:
    """The diff of one part between two texts (None: the part is absent), or None if equal."""
    if old == new:
        return None
    html = part == "html" or part.endswith(".html")
    a, b = _lines(old, html=html), _lines(new, html=html)
    if not comparable(a, b):
        said = too_different(a, b)
        unified = f"--- {labels[0]} {part}\n+++ {labels[1]} {part}\n{said}\n"
        return PartDiff(part, _change(old, new), unified, (DiffLine(LineKind.HUNK, said),))
    unified = "".join(
        f"{line}\n"
        for line in difflib.unified_diff(
            a, b, f"{labels[0]} {part}", f"{labels[1]} {part}", n=CONTEXT, lineterm=""
        )
    )
    if not unified:  # only the line endings or a final newline differ
        unified = f"--- {labels[0]} {part}\n+++ {labels[1]} {part}\n(whitespace at line ends)\n"
    return PartDiff(part, _change(old, new), unified, _hunk_lines(a, b))


def _change(old: object, new: object) -> PartChange:
    if old is None:
        return PartChange.ADDED
    return PartChange.REMOVED if new is None else PartChange.CHANGED


def _texts(record: Correspondence) -> dict[str, str | None]:
    parts: dict[str, str | None] = {
        "language": record.language,
        "subject": record.subject,
        "html": record.html,
        "text": record.text,
    }
    for tag, tr in sorted(record.translations.items()):
        for name in TEXT_PARTS:
            parts[f"translations.{tag}.{name}"] = getattr(tr, name)
    return parts


def _image_changes(old: Correspondence, new: Correspondence) -> tuple[ImageChange, ...]:
    a, b = image_refs(old.images), image_refs(new.images)
    changes = []
    for cid in sorted(a.keys() | b.keys()):
        before, after = a.get(cid), b.get(cid)
        if before == after:
            continue
        changes.append(ImageChange(cid, _change(before, after), before, after))
    return tuple(changes)


def diff_records(
    name: str, old: Correspondence, new: Correspondence, *, numbers: tuple[int, int]
) -> VersionDiff:
    """What changed from ``old`` (version ``numbers[0]``) to ``new`` (``numbers[1]``)."""
    labels = (f"{name} version {numbers[0]}", f"{name} version {numbers[1]}")
    a, b = _texts(old), _texts(new)
    tags = sorted(old.translations.keys() | new.translations.keys())
    # The record's own parts first, then each translation's, in tag order.
    order = [
        "language",
        *TEXT_PARTS,
        *(f"translations.{tag}.{part}" for tag in tags for part in TEXT_PARTS),
    ]
    parts = []
    for part in order:
        found = part_diff(part, a.get(part), b.get(part), labels=labels)
        if found is not None:
            parts.append(found)
    return VersionDiff(name, numbers[0], numbers[1], tuple(parts), _image_changes(old, new))
