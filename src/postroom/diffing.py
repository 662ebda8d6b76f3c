"""Bounding line diffs: ``difflib`` takes time quadratic in the lines that differ.

Two texts are compared line by line only when the lines between their common start and
their common end are few enough; else a diff says how many lines changed, not which.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CHANGED_LINES = 1000  # ~0.5 s for difflib at its worst (lines swapped pairwise)


def changed_lines(old: Sequence[str], new: Sequence[str]) -> tuple[int, int]:
    """How many lines of each side lie between the common first and last lines."""
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[len(old) - 1 - end] == new[len(new) - 1 - end]:
        end += 1
    return len(old) - start - end, len(new) - start - end


def comparable(old: Sequence[str], new: Sequence[str]) -> bool:
    """Whether a line diff of ``old`` and ``new`` stays within :data:`MAX_CHANGED_LINES`."""
    return max(changed_lines(old, new)) <= MAX_CHANGED_LINES


def too_different(old: Sequence[str], new: Sequence[str]) -> str:
    """What is said instead of a line diff that would take too long."""
    removed, added = changed_lines(old, new)
    return (
        f"({removed} lines replaced by {added}: more than {MAX_CHANGED_LINES} changed lines "
        "are not compared line by line)"
    )
