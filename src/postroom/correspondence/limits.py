"""What one rendering may spend: characters built, items collected, loop steps and seconds.

A template is untrusted input (a ``send``-scope caller may write an ad-hoc subject), so
every operation that sizes its result from a number or a repetition is estimated here
*before* it allocates, and everything a rendering builds is charged against one budget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from types import GeneratorType
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

MAX_RENDERED_CHARS = 1_000_000
"""Characters one part (subject, HTML or text) may render to."""
MAX_VALUE_CHARS = 1_000_000
"""Characters any single value a template builds may hold (a list counts as its text)."""
MAX_ITEMS = 50_000
"""Items any single list, split or join a template builds may hold."""
MAX_BUILT_CHARS = 4_000_000
"""Characters one rendering may build in all, its output included (memory stays a few MB)."""
MAX_LOOP_STEPS = 2_000_000
"""Loop iterations one rendering may take."""
MAX_INT_BITS = 14_000
"""Bits an integer a template computes may have: about the 4300 digits Python prints."""
RENDER_SECONDS = 2.0
"""Seconds one rendering (all parts of one email) may take, loops without output included."""

_OBJECT = 64  # what a small object costs: a loop may keep one per step in a chain
_TICKS = 16  # charges between two looks at the clock: each charge is a bounded step
_ESCAPE_CHECK_AT = MAX_RENDERED_CHARS // 6  # shorter strings stay under the limit escaped
_SMALL = 4096  # strings this short are split without counting their words first
_WORD_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"


class LimitExceeded(Exception):
    """A rendering went past one of its limits (the message says which)."""


class Budget:
    """What is left of one rendering's characters, loop steps and time."""

    __slots__ = ("chars", "deadline", "seconds", "steps", "ticks")

    def __init__(self, *, seconds: float) -> None:
        self.chars = MAX_BUILT_CHARS
        self.steps = MAX_LOOP_STEPS
        self.ticks = _TICKS
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than the {self.seconds:g} s time limit")


_budget: ContextVar[Budget | None] = ContextVar("postroom_template_budget", default=None)


def start(*, seconds: float) -> Any:
    """Give the current context a fresh budget; returns the token for :func:`stop`."""
    return _budget.set(Budget(seconds=seconds))


def stop(token: Any) -> None:
    _budget.reset(token)


def charge(chars: int) -> None:
    """Count ``chars`` built against the rendering's budget, and check its time."""
    budget = _budget.get()
    if budget is None:  # compile-time constant folding: nothing is rendering
        return
    budget.chars -= chars
    if budget.chars < 0:
        raise LimitExceeded(
            f"the template built more than {MAX_BUILT_CHARS} characters in all "
            "(strings, lists and output)"
        )
    budget.ticks -= 1
    if not budget.ticks:
        budget.ticks = _TICKS
        budget.check_time()


def charge_now(chars: int) -> None:
    """:func:`charge`, checking the time at once: for costly steps that print nothing
    (an include starts a template and a context), which doubling would multiply unseen."""
    budget = _budget.get()
    if budget is None:
        return
    charge(chars)
    budget.check_time()


def printed(value: Any) -> Any:
    """Size and charge a value about to be printed (a list prints as its text).

    Called for every ``{{ }}``: kept to a few operations for plain strings.
    """
    if isinstance(value, str):
        size = len(value)
        if size > _ESCAPE_CHECK_AT and not hasattr(value, "__html__"):
            size = escaped_len(value)  # as printed in HTML
    else:
        size = size_of(value, MAX_RENDERED_CHARS)
    if size > MAX_RENDERED_CHARS:
        require(size, what="a printed value", limit=MAX_RENDERED_CHARS)
    budget = _budget.get()
    if budget is not None:
        budget.chars -= size  # the slot it takes in a buffer is charged with its Output
        if budget.chars < 0:
            charge(0)  # raises, with the message
    return value


def charge_value(value: Any) -> Any:
    """Charge what a value just built costs (a string its length, a list its slots); returns it."""
    if isinstance(value, str | bytes):
        charge(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        charge(sys.getsizeof(value))  # its own memory; the items were charged as built
    elif isinstance(value, GeneratorType):
        # A generator (|map, |select) keeps its frame and what it reads: stored in a loop
        # (ns.g = ns.g|map(...)) it makes a chain of them.
        charge(8 * _OBJECT)
    else:
        charge(_OBJECT)
    return value


def built(value: Any) -> Any:
    """Charge a list, tuple or dict a template writes out (``[ns.l, ns.l]`` in a loop)."""
    charge(sys.getsizeof(value))
    return value


def require(
    estimate: int, *, what: str, limit: int = MAX_VALUE_CHARS, unit: str = "characters"
) -> None:
    """Refuse an operation whose result is estimated at more than ``limit``."""
    if estimate > limit:
        raise LimitExceeded(f"{what} would build over {limit} {unit}")


def size_of(value: Any, cap: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``value`` prints as; stops counting past ``cap``.

    Counting the text rather than the memory catches a list that repeats one long
    string: it is small until something prints it.
    """
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is float:
        return 24
    if kind is int:
        return int(value.bit_length()) * 3 // 10 + 2
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | bytearray):
        return 4 * len(value)  # printed as its repr: b'\xe9' for one byte
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, Undefined):
        return 0
    if isinstance(value, Namespace):
        value = dict(value._Namespace__attrs)
    total = 2
    if isinstance(value, Mapping):
        for key, item in value.items():
            total += size_of(key, cap - total) + size_of(item, cap - total) + 4
            if total > cap:
                return total
        return total
    if isinstance(value, list | tuple | set | frozenset):
        if len(value) > cap:
            return len(value)
        for item in value:
            total += size_of(item, cap - total) + 2
            if total > cap:
                return total
        return total
    return 64  # other objects print as a short description


def steps(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable``, counting each step against the budget's steps and time."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    count = 0
    for item in iterable:
        count += 1
        if count == 64:  # checking the clock every step would cost more than the loop
            budget.steps -= count
            count = 0
            if budget.steps < 0:
                raise LimitExceeded(f"loops took more than {MAX_LOOP_STEPS} steps")
            budget.check_time()
        yield item
    budget.steps -= count


class Steps:
    """A loop's iterable, sized when the original is, whose steps count against the budget."""

    __slots__ = ("_iterable",)

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return steps(self._iterable)

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]  # TypeError if unsized: the loop copes

    def __getitem__(self, index: Any) -> Any:
        # Indexable as what it wraps is (a range: `random`, `first`, `[2]`, `[1:3]`); a
        # slice of a range is another range, so nothing is built here.
        item = self._iterable[index]  # type: ignore[index]  # TypeError if it is not
        return Steps(item) if isinstance(index, slice) else item


def bounded_list(iterable: Any, *, what: str) -> list[Any]:
    """The items of ``iterable`` as a list, refusing more than :data:`MAX_ITEMS`."""
    if hasattr(iterable, "__len__") and not isinstance(iterable, Undefined):
        require(len(iterable), what=what, limit=MAX_ITEMS, unit="items")
        items = list(iterable)
    else:
        items = []
        for item in steps(iterable):
            items.append(item)
            if len(items) > MAX_ITEMS:
                require(len(items), what=what, limit=MAX_ITEMS, unit="items")
    charge(8 * len(items))
    return items


def pieces(text: str) -> int:
    """At most how many words or chunks splitting ``text`` on non-word characters gives."""
    if len(text) <= _SMALL:
        return len(text) + 1
    # Every byte that is not an ASCII word character may separate two pieces; bytes of
    # non-ASCII characters count as separators too, which only overestimates.
    return len(text.encode("utf-8", "surrogatepass").translate(None, _WORD_BYTES)) + 1


def require_pieces(count: int, *, what: str) -> None:
    require(count, what=what, limit=MAX_ITEMS, unit="pieces")


def escaped_len(text: str) -> int:
    """The length of ``text`` once HTML-escaped (``&`` becomes ``&amp;`` and so on)."""
    return (
        len(text)
        + 4 * text.count("&")
        + 3 * (text.count("<") + text.count(">"))
        + 4 * (text.count('"') + text.count("'"))
    )
