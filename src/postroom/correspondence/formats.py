"""Estimating ``%`` and ``str.format`` results before they are built.

``'%300000000d' % 1`` or ``'{:{w}}'.format(x, w=10**9)`` allocate from one number in a
format string; the estimates here read those numbers (``*`` widths and nested fields
included) so that the sandbox can refuse the call before Python allocates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter

from postroom.correspondence.limits import MAX_VALUE_CHARS, charge, require, size_of

_DIGITS = re.compile(r"\d+")
_FLOAT_DIGITS = 320  # '%f' of 1e308 prints 309 digits before the point
_HTML_GROWTH = 6  # escaping turns one character into at most six (&#39;)


def _number(text: str, start: int) -> tuple[int, int]:
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    return (int(text[start:end]) if end > start else 0), end


def _conversion_size(value: Any, conversion: str, precision: int | None) -> int:
    if conversion in "sra":
        size = size_of(value) * (10 if conversion != "s" else 1)  # repr escapes: \U0001f600
        return size if precision is None else min(size, precision)
    if conversion == "c":
        return 1
    if conversion in "diuoxX" and isinstance(value, int):
        return max(size_of(value), precision or 0) + 4
    # Floats, and integers shown as floats: digits before the point, then the precision.
    return _FLOAT_DIGITS + (precision if precision is not None else 6) + 4


def percent_size(template: str, values: Any, *, escaping: bool = False) -> int:
    """About how many characters ``template % values`` makes (bad formats are Python's)."""
    static = _static_bound(template) if len(template) < 256 else None
    if static is not None:
        # A quick bound first: each spec is at most its numbers, a float's digits or its
        # value's text (repr may escape tenfold); most formats stop here.
        if type(values) is tuple:
            shown = sum(map(size_of, values))
        elif isinstance(values, Mapping):
            shown = sum(map(size_of, values.values()))
        else:
            shown = size_of(values)
        quick = (static + 10 * shown) * (_HTML_GROWTH if escaping else 1)
        if quick <= MAX_VALUE_CHARS:
            return quick
    return _parsed_size(template, values, escaping=escaping)


@functools.lru_cache(maxsize=512)
def _static_bound(template: str) -> int | None:
    """What ``template``'s text and numbers can add, or None when a ``*`` width reads a value."""
    if "*" in template:
        return None
    return len(template) * (_FLOAT_DIGITS + 10) + sum(map(int, _DIGITS.findall(template)))


def _parsed_size(  # noqa: PLR0915 - one pass over the format, as CPython reads it
    template: str, values: Any, *, escaping: bool
) -> int:
    positional = values if isinstance(values, tuple) else (values,)
    mapping = values if isinstance(values, Mapping) else None
    total = 0
    used = 0
    pos = 0
    length = len(template)
    while (start := template.find("%", pos)) != -1:
        total += start - pos
        pos = start + 1
        if pos >= length:
            break
        key = None
        if template[pos] == "(":  # mapping key, which may hold balanced parentheses
            depth, end = 1, pos + 1
            while depth and end < length:
                depth += {"(": 1, ")": -1}.get(template[end], 0)
                end += 1
            key, pos = template[pos + 1 : end - 1], end
        while pos < length and template[pos] in "-+ #0":
            pos += 1
        width: int | None = None
        if pos < length and template[pos] == "*":
            width, pos = _star(positional, used), pos + 1
            used += 1
        else:
            width, pos = _number(template, pos)
        precision: int | None = None
        if pos < length and template[pos] == ".":
            if pos + 1 < length and template[pos + 1] == "*":
                precision, pos = _star(positional, used), pos + 2
                used += 1
            else:
                precision, pos = _number(template, pos + 1)
        while pos < length and template[pos] in "hlL":
            pos += 1
        if pos >= length:
            break
        conversion = template[pos]
        pos += 1
        if conversion == "%":
            total += 1
            continue
        if key is not None and mapping is not None:
            value = mapping.get(key)
        else:
            value = positional[used] if used < len(positional) else None
            used += 1
        size = _conversion_size(value, conversion, precision)
        if escaping:
            size *= _HTML_GROWTH
        total += max(width or 0, size)
    return total + length - pos


def _star(values: tuple[Any, ...], index: int) -> int:
    value = values[index] if index < len(values) else 0
    return abs(value) if isinstance(value, int) else 0


def field_size(value: Any, spec: str) -> int:
    """About how many characters ``format(value, spec)`` makes: every number in the spec
    (width, precision) may add that many characters, and grouping adds a third."""
    base = _FLOAT_DIGITS if isinstance(value, float) else size_of(value)
    return base + base // 3 + sum(int(n) for n in _DIGITS.findall(spec)) + 8


class LimitedFormatter(SandboxedFormatter):
    """The sandbox's ``str.format``, refusing fields or totals past the value limit."""

    growth = 1

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._size += field_size(value, format_spec) * self.growth
        require(self._size, what="a str.format call")
        result = super().format_field(value, format_spec)
        charge(len(result))
        return result


class LimitedEscapeFormatter(LimitedFormatter, SandboxedEscapeFormatter):
    """:class:`LimitedFormatter` for ``Markup.format``, which escapes every field."""

    growth = _HTML_GROWTH
