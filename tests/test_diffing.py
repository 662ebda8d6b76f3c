"""Diffs of versions and of reviewers' edits stay bounded: lines are compared one by one only
when few enough of them changed (difflib's time grows with their square)."""

from __future__ import annotations

from postroom.correspondence.diffs import LineKind, part_diff
from postroom.diffing import MAX_CHANGED_LINES, changed_lines, comparable
from postroom.reviews.edits import diff
from postroom.reviews.models import Text


def swapped(count: int) -> tuple[list[str], list[str]]:
    """Lines, and the same lines swapped pairwise: difflib's slowest case."""
    old = [f"<p>{i:07d}</p>" for i in range(count)]
    new = [line for pair in zip(old[1::2], old[::2], strict=True) for line in pair]
    return old, new


def test_only_the_lines_between_the_common_start_and_end_count() -> None:
    old = ["a", "b", "c", "d", "e"]
    assert changed_lines(old, ["a", "b", "X", "d", "e"]) == (1, 1)
    assert changed_lines(old, ["a", "e"]) == (3, 0)
    assert changed_lines(old, old) == (0, 0)
    assert changed_lines(["a", "a"], ["a"]) == (1, 0)  # the start and end do not overlap


def test_a_long_letter_with_one_change_is_still_diffed_line_by_line() -> None:
    old = [f"<p>line {i}</p>" for i in range(20 * MAX_CHANGED_LINES)]
    new = [*old[:5000], "<p>changed</p>", *old[5001:]]
    assert comparable(old, new)
    found = part_diff("html", "\n".join(old), "\n".join(new), labels=("v1", "v2"))
    assert found is not None
    assert [line.text for line in found.lines if line.kind is LineKind.ADDED] == ["<p>changed</p>"]


def test_too_many_changed_lines_are_summed_up_not_compared() -> None:
    old, new = swapped(4 * MAX_CHANGED_LINES)
    assert not comparable(old, new)
    found = part_diff("html", "\n".join(old), "\n".join(new), labels=("v1", "v2"))
    assert found is not None
    assert [line.kind for line in found.lines] == [LineKind.HUNK]
    assert "4000 lines replaced by 4000" in found.unified
    assert "not compared line by line" in found.unified


def test_a_reviewers_large_rewrite_is_summed_up_in_the_history_diff() -> None:
    old, new = swapped(4 * MAX_CHANGED_LINES)
    said = diff(Text("s", "\n".join(old), "t"), Text("s2", "\n".join(new), "t"))
    assert "-s\n+s2" in said  # the subject, compared as ever
    assert "--- html (composed)\n+++ html (reviewed)\n(4000 lines replaced by 4000" in said


def test_just_under_the_bound_is_compared() -> None:
    old, new = swapped(MAX_CHANGED_LINES)
    assert comparable(old, new)
    said = diff(Text("s", "\n".join(old), "t"), Text("s", "\n".join(new), "t"))
    assert "not compared line by line" not in said
    assert "@@" in said
