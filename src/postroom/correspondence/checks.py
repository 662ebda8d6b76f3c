"""Size checks for the filters, methods and globals a template can call.

Each check reads the arguments that size a result (a width, a repetition, a
replacement, a list to join) and refuses the call before it allocates; a check may
hand back the arguments with an iterator replaced by a bounded list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import generate_lorem_ipsum

from postroom.correspondence.formats import percent_size
from postroom.correspondence.limits import (
    MAX_ITEMS,
    MAX_VALUE_CHARS,
    bounded_list,
    escaped_len,
    pieces,
    require,
    require_pieces,
    size_of,
)

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
Check = Callable[[Any, Args, Kwargs, bool], Args | None]
"""A check: (value, other args, kwargs, autoescape) -> replacement args or None."""

MAX_COLUMNS = 1_000
"""Slices ``slice`` may cut a list into (each is a list of its own)."""
_HTML_GROWTH = 6


def _arg(args: Args, kwargs: Kwargs, index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _len(value: Any) -> int:
    return len(value) if isinstance(value, str) else size_of(value)


def _escaped(value: Any, escaping: bool) -> int:
    """Characters ``value`` prints as, escaped when ``escaping`` (exact only when it matters)."""
    size = _len(value)
    if not escaping or hasattr(value, "__html__") or size * _HTML_GROWTH <= MAX_VALUE_CHARS:
        return size * (_HTML_GROWTH if escaping and not hasattr(value, "__html__") else 1)
    return escaped_len(value) if isinstance(value, str) else size * _HTML_GROWTH


def _width(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return value if isinstance(value, int) else 0


def _shape(value: Any, depth: int = 0) -> tuple[int, int]:
    """(elements, deepest nesting) of ``value``, counting at most about MAX_ITEMS."""
    if isinstance(value, Mapping):
        children: Any = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        children = value
    else:
        return 1, depth
    count, deepest = 1, depth + 1
    for child in children:
        more, deep = _shape(child, depth + 1)
        count, deepest = count + more, max(deepest, deep)
        if count > MAX_ITEMS:
            break
    return count, deepest


# --- filters ----------------------------------------------------------------------------


def _center(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    require(max(_len(value), _width(_arg(args, kwargs, 0, "width", 80))), what="center")


def _indent(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    text = value if isinstance(value, str) else ""
    lines = (text.count("\n") + 1) if text else size_of(value) + 1
    width = _width(_arg(args, kwargs, 0, "width", 4))
    require(_len(value) + lines * width, what="indent")


def _wordwrap(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    size = _len(value)
    width = max(_width(_arg(args, kwargs, 0, "width", 79)), 1)
    wrap = _arg(args, kwargs, 2, "wrapstring", None)
    chunks = (pieces(value) if isinstance(value, str) else size + 1) + size // width
    require_pieces(chunks, what="wordwrap")
    require(size + chunks * len(str(wrap) if wrap is not None else "\n"), what="wordwrap")


def _replace_size(text: Any, old: Any, new: Any, count: Any, escaping: bool) -> int:
    base = str(text)
    old_text = str(old)
    found = base.count(old_text) if old_text else len(base) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return _escaped(text, escaping) + found * _escaped(new, escaping)


def _replace(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    old = _arg(args, kwargs, 0, "old", "")
    new = _arg(args, kwargs, 1, "new", "")
    count = _arg(args, kwargs, 2, "count", None)
    require(_replace_size(value, old, new, count, escaping), what="replace")


def _format(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    markup = hasattr(value, "__html__")  # Markup % escapes each value: up to six times as long
    text = value if type(value) is str else str(value)
    size = percent_size(text, kwargs or args, escaping=markup)
    if size > MAX_VALUE_CHARS:
        require(size, what="format")


def _join(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> Args:
    items = bounded_list(value, what="join")
    glue = _len(_arg(args, kwargs, 0, "d", ""))
    total = glue * max(len(items) - 1, 0)
    for item in items:
        total += _escaped(item, escaping)
        require(total, what="join")
    return (items, *args)


def _tojson(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    elements, depth = _shape(value)
    require_pieces(elements, what="tojson")
    indent = _width(_arg(args, kwargs, 0, "indent", None) or 0)
    require(size_of(value) * _HTML_GROWTH + elements * depth * indent, what="tojson")


def _pprint(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    elements, depth = _shape(value)
    require_pieces(elements, what="pprint")
    require(size_of(value) * 2 + elements * depth, what="pprint")


def _string(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    require(_len(value), what="string")


def _escape(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    require(_escaped(value, True), what="escape")


def _xmlattr(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    require(size_of(value) * _HTML_GROWTH, what="xmlattr")


def _urlencode(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    # Every byte may become %XX, and a character may be four bytes.
    growth = 3 if isinstance(value, str) and value.isascii() else 12
    require(_len(value) * growth, what="urlencode")


def _case(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    # Case mapping may turn one character into three ('\ufb03'.upper() is 'FFI').
    size = _len(value)
    require(size if isinstance(value, str) and value.isascii() else size * 3, what="case change")


def _words(what: str) -> Check:
    def check(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
        require_pieces(2 * pieces(str(value)), what=what)
        _case(value, args, kwargs, escaping)

    return check


def _urlize(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    text = str(value)
    require_pieces(2 * pieces(text), what="urlize")
    extra = sum(
        _len(_arg(args, kwargs, i, name, None) or "") for i, name in ((2, "target"), (3, "rel"))
    )
    # A link needs a '.', '@' or ':'; each one may be wrapped in an <a> tag with both
    # attributes, and the address is written twice (href and text).
    links = text.count(".") + text.count("@") + text.count(":") + 1
    require(2 * escaped_len(text) + links * (80 + extra), what="urlize")


def _collect(what: str) -> Check:
    """Filters that make a list of their input: at most MAX_ITEMS items."""

    def check(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> Args | None:
        if isinstance(value, str) and what == "reverse":
            return None
        if isinstance(value, Sized) and not isinstance(value, Undefined):
            require(len(value), what=what, limit=MAX_ITEMS, unit="items")
            return None
        return (bounded_list(value, what=what), *args)

    return check


def _batch(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> Args | None:
    count = _arg(args, kwargs, 0, "linecount", 1)
    require(_width(count), what="batch", limit=MAX_ITEMS, unit="items")
    return _collect("batch")(value, args, kwargs, escaping)


def _slice(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> Args | None:
    count = _arg(args, kwargs, 0, "slices", 1)
    require(_width(count), what="slice", limit=MAX_COLUMNS, unit="slices")
    return _collect("slice")(value, args, kwargs, escaping)


def _sum(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> Args:
    items = bounded_list(value, what="sum")
    start = _arg(args, kwargs, 1, "start", 0)
    if isinstance(start, str | bytes | list | tuple):
        # Adding sequences copies the running total each time: quadratic in the items.
        total = size_of(start) + sum(size_of(item) for item in items)
        require(total, what="sum")
        require(total * len(items), what="sum", limit=20 * MAX_VALUE_CHARS, unit="copied items")
    return (items, *args)


def _lazy(value: Any, args: Args, kwargs: Kwargs, escaping: bool) -> None:
    """Filters that return a generator: nothing to size, but each generator is charged."""


FILTER_CHECKS: dict[str, Check] = {
    "batch": _batch,
    "center": _center,
    "dictsort": _collect("dictsort"),
    "e": _escape,
    "escape": _escape,
    "forceescape": _escape,
    "format": _format,
    "groupby": _collect("groupby"),
    "indent": _indent,
    "items": _lazy,
    "join": _join,
    "list": _collect("list"),
    "map": _lazy,
    "reject": _lazy,
    "rejectattr": _lazy,
    "select": _lazy,
    "selectattr": _lazy,
    "pprint": _pprint,
    "replace": _replace,
    "reverse": _collect("reverse"),
    "slice": _slice,
    "sort": _collect("sort"),
    "string": _string,
    "striptags": _words("striptags"),
    "sum": _sum,
    "title": _words("title"),
    "tojson": _tojson,
    "unique": _collect("unique"),
    "urlencode": _urlencode,
    "urlize": _urlize,
    "wordcount": _words("wordcount"),
    "wordwrap": _wordwrap,
    "xmlattr": _xmlattr,
}


# --- methods ----------------------------------------------------------------------------


def _pad(owner: Any, args: Args, kwargs: Kwargs) -> None:
    require(max(len(owner), _width(_arg(args, kwargs, 0, "width", 0))), what="padding")


def _expandtabs(owner: Any, args: Args, kwargs: Kwargs) -> None:
    size = _width(_arg(args, kwargs, 0, "tabsize", 8))
    require(
        len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * size,
        what="expandtabs",
    )


def _method_replace(owner: Any, args: Args, kwargs: Kwargs) -> None:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    count = _arg(args, kwargs, 2, "count", -1)
    found = owner.count(old) if len(old) else len(owner) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    require(len(owner) + found * len(new), what="replace")


def _method_join(owner: Any, args: Args, kwargs: Kwargs) -> Args:
    items = bounded_list(_arg(args, kwargs, 0, "iterable", ()), what="join")
    total = len(owner) * max(len(items) - 1, 0)
    for item in items:
        total += _len(item)
        require(total, what="join")
    return (items,)


def _split(owner: Any, args: Args, kwargs: Kwargs) -> None:
    sep = _arg(args, kwargs, 0, "sep", None)
    limit = _arg(args, kwargs, 1, "maxsplit", -1)
    if sep:
        parts = owner.count(sep) + 1
    else:
        parts = pieces(owner) if isinstance(owner, str) else len(owner) + 1
    if isinstance(limit, int) and limit >= 0:
        parts = min(parts, limit + 1)
    require_pieces(parts, what="split")


def _splitlines(owner: Any, args: Args, kwargs: Kwargs) -> None:
    require_pieces(pieces(owner) if isinstance(owner, str) else len(owner) + 1, what="splitlines")


def _translate(owner: Any, args: Args, kwargs: Kwargs) -> None:
    table = _arg(args, kwargs, 0, "table", None)
    values = table.values() if isinstance(table, Mapping) else table
    longest = 1
    if isinstance(values, str | bytes) or values is None:
        values = ()
    for value in bounded_list(values, what="translate"):
        longest = max(longest, size_of(value))
    require(len(owner) * longest, what="translate")


def _grow(factor: int) -> Callable[[Any, Args, Kwargs], None]:
    def check(owner: Any, args: Args, kwargs: Kwargs) -> None:
        ascii_only = owner.isascii()
        require(len(owner) * (1 if ascii_only else factor), what="string method")

    return check


def _hex(owner: Any, args: Args, kwargs: Kwargs) -> None:
    require(len(owner) * 3, what="hex")


METHOD_CHECKS: dict[str, Callable[[Any, Args, Kwargs], Args | None]] = {
    "capitalize": _grow(3),
    "casefold": _grow(3),
    "center": _pad,
    "encode": _grow(4),
    "expandtabs": _expandtabs,
    "hex": _hex,
    "join": _method_join,
    "ljust": _pad,
    "lower": _grow(3),
    "replace": _method_replace,
    "rjust": _pad,
    "rsplit": _split,
    "split": _split,
    "splitlines": _splitlines,
    "swapcase": _grow(3),
    "title": _grow(3),
    "translate": _translate,
    "upper": _grow(3),
    "zfill": _pad,
}
"""Checks for methods of str, Markup and bytes, by name."""


def check_to_bytes(args: Args, kwargs: Kwargs) -> None:
    require(_width(_arg(args, kwargs, 0, "length", 1)), what="to_bytes", unit="bytes")


def check_fromkeys(args: Args, kwargs: Kwargs) -> Args:
    return (bounded_list(_arg(args, kwargs, 0, "iterable", ()), what="fromkeys"), *args[1:])


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum``, refusing more text than one value may hold."""
    # A word is at most 12 characters plus a space or comma; HTML adds <p></p> per paragraph.
    require(_width(n) * (_width(max) * 14 + 16), what="lipsum")
    text: str = generate_lorem_ipsum(n=n, html=html, min=min, max=max)
    return text
