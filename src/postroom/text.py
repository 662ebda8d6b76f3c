"""Text at the edges: valid Unicode, and only the control characters its field may hold.

Python hands bytes it cannot decode over as lone surrogates: command-line arguments and
file names through ``surrogateescape`` (``\\xff`` becomes U+DCFF), JSON and YAML through
``"\\ud800"`` escapes. Such text cannot be written as UTF-8, so it would fail deep
inside (in the database driver, or while writing the message) with a bare
``UnicodeEncodeError``. Every entry point checks its text here first; the refusal is an
:class:`~postroom.errors.InvalidTextError` naming the field, never quoting its value
(it may be a secret).

What a field may hold:

- a *line* (a header, an address, a name, a subject): no C0 control, no DEL and no
  Unicode line break (NEL, U+2028, U+2029), which could forge a header or a log line;
- a *body*: tab, line feed and carriage return, and no other C0 control;
- anything else (case data, record fields): no NUL, which PostgreSQL cannot store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from postroom.errors import InvalidTextError

_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_BODY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NUL = re.compile("\x00")
_NOTHING = re.compile("(?!)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_unicode(value: str, *, field: str) -> str:
    """``value`` if it is valid Unicode (no lone surrogate); controls are the caller's."""
    return _check(value, field=field, controls=_NOTHING, where="")


def check_line(value: str, *, field: str) -> str:
    """``value`` if it is valid Unicode on one line without control characters."""
    return _check(value, field=field, controls=_LINE_CONTROL, where="on one line")


def check_body(value: str, *, field: str) -> str:
    """``value`` if it is valid Unicode whose only controls are tab, CR and LF."""
    return _check(value, field=field, controls=_BODY_CONTROL, where="in a body")


def check_tree(value: Any, *, field: str) -> Any:
    """``value`` if every string in it (mapping keys too) is valid Unicode without NUL.

    Walks mappings, lists and tuples as JSON or YAML gives them; the error names the
    path of the string, e.g. ``data.items[2]`` (``field`` may be a prefix ending in a
    space: ``"r.yaml: "`` gives ``r.yaml: accounts[0].name``).
    """
    if isinstance(value, str):
        _check(value, field=field, controls=_NUL, where="in stored text")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check(key, field=f"{field} key {key!r}", controls=_NUL, where="in a key")
            check_tree(item, field=_member(field, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_tree(item, field=f"{field}[{i}]")
    return value


class EmailText(Protocol):
    """The text of an email request (:class:`postroom.cases.emails.EmailRequest`)."""

    @property
    def subject(self) -> str | None: ...
    @property
    def body(self) -> str | None: ...
    @property
    def correspondence(self) -> str | None: ...


def check_email(request: EmailText, *, prefix: str = "") -> None:
    """An email's subject and correspondence name are lines, its body a body."""
    for name, value in (("subject", request.subject), ("correspondence", request.correspondence)):
        if value is not None:
            check_line(value, field=prefix + name)
    if request.body is not None:
        check_body(request.body, field=prefix + "body")


def check_names(**names: str | None) -> None:
    """Each given name (a class, a case id, an operator) is valid Unicode on one line."""
    for field, value in names.items():
        if value is not None:
            check_line(value, field=field)


def _member(field: str, key: object) -> str:
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        # A root field ending in a space ("r.yaml: ") is a prefix, not a name.
        return f"{field}{key}" if not field or field.endswith(" ") else f"{field}.{key}"
    # repr() escapes surrogates and line breaks: the name stays printable on one line.
    return f"{field}[{key!r}]"


def _check(value: str, *, field: str, controls: re.Pattern[str], where: str) -> str:
    if (bad := _SURROGATE.search(value)) is not None:
        raise InvalidTextError(
            f"{field} is not valid Unicode at character {bad.start() + 1}: "
            f"{_surrogate(bad.group())}",
            field=field,
        )
    if (bad := controls.search(value)) is not None:
        raise InvalidTextError(
            f"{field} contains control character U+{ord(bad.group()):04X} at character "
            f"{bad.start() + 1}, which is not allowed {where}",
            field=field,
        )
    return value


def _surrogate(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # surrogateescape's mark of an undecodable byte: say which byte it was.
        return f"byte 0x{code - 0xDC00:02X} is not UTF-8 (is the text in another encoding?)"
    return f"lone surrogate U+{code:04X}"


def join_surrogate_pairs(value: Any) -> Any:
    """``value`` with each escaped surrogate pair made the one character it stands for.

    JSON writes a character beyond U+FFFF as a pair of escapes (``"\\ud83d\\ude00"``
    for 😀); PyYAML, reading such a file, leaves them two lone surrogates. Lone ones
    stay, for :func:`check_tree` to refuse.
    """
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, dict):
        return {join_surrogate_pairs(k): join_surrogate_pairs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [join_surrogate_pairs(v) for v in value]
    return value


def decode_utf8(data: bytes, *, source: str) -> str:
    """``data`` decoded as UTF-8, or an error naming ``source``, the line and byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise undecodable(data, exc.start, source=source) from None


def undecodable(data: bytes, start: int, *, source: str) -> InvalidTextError:
    """The error for ``data`` that stops being UTF-8 at byte ``start``."""
    line = data.count(b"\n", 0, start) + 1
    return InvalidTextError(
        f"{source} line {line}, byte offset {start}: byte 0x{data[start]:02X} is not UTF-8 "
        "(it must be UTF-8)",
        field=source,
    )


def printable(value: str) -> str:
    """``value`` fit to print in a message: undecodable bytes shown as ``\\udcff`` escapes.

    For file paths, which may legitimately hold bytes that are not UTF-8.
    """
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
