"""Nesting bombs cut off before the standard library's parser reads them.

The stdlib parser nests a generator per multipart or message/rfc822 level and checks
every line against every open boundary: a message nested a thousand levels deep costs
depth x lines and ends in RecursionError. A scan of the lines that open or close a
level (a C-speed regex; Python only sees those lines) finds where the nesting passes
the bound, and the message is read up to there.
"""

from __future__ import annotations

import re

MAX_NESTING = 30

_LEVEL = re.compile(
    rb"^(?:--([^\r\n]*)"
    rb"|content-type:[ \t]*(multipart/|message/(?:rfc822|global))[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.MULTILINE | re.IGNORECASE,
)
_DECLARES = re.compile(
    rb"^content-type:[ \t]*(?:multipart/|message/(?:rfc822|global))", re.MULTILINE | re.IGNORECASE
)
_BOUNDARY = re.compile(rb"""boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^";\s]+))""", re.IGNORECASE)


def nesting_cut(raw: bytes) -> int | None:
    """The offset where ``raw`` nests deeper than :data:`MAX_NESTING`, or None."""
    if len(_DECLARES.findall(raw)) <= MAX_NESTING:
        return None  # fewer levels declared than the bound: it cannot be deeper
    # Open levels: a boundary for a multipart, None for an embedded message (which
    # ends only when a boundary around it does).
    stack: list[bytes | None] = []
    for match in _LEVEL.finditer(raw):
        delimiter, kind = match.groups()
        if delimiter is not None:
            _close(stack, delimiter.rstrip())
            continue
        if kind.lower() == b"multipart/":
            found = _BOUNDARY.search(match.group())
            if found is None:
                continue  # no boundary: the parser reads it as one text part
            stack.append((found.group(1) or found.group(2) or b"").rstrip())
        else:
            stack.append(None)
        if len(stack) > MAX_NESTING:
            return match.start()
    return None


def _close(stack: list[bytes | None], delimiter: bytes) -> None:
    """Pop the levels a ``--boundary`` or ``--boundary--`` line ends."""
    for position in range(len(stack) - 1, -1, -1):
        boundary = stack[position]
        if boundary is None:
            continue
        if delimiter == boundary:
            del stack[position + 1 :]  # a next part of this multipart: inner levels end
            return
        if delimiter == boundary + b"--":
            del stack[position:]
            return
