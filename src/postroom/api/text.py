"""JSON bodies, path and query parameters hold valid Unicode without NUL, for every route.

``"\\ud800"`` and ``"\\u0000"`` are valid JSON escapes, but the text they give can be
neither encoded as UTF-8 nor stored by PostgreSQL. Pydantic lets some such strings
through (a plain ``str`` field is not re-encoded), so the parsed body is walked here and
the first bad string refused with its field, e.g. ``body.emails[3].subject``.

Path and query parameters are read from the raw request: the server and Starlette
decode them replacing bytes that are not UTF-8 with U+FFFD, which would look up or
filter by text nobody sent, and a ``%00`` would reach PostgreSQL, which refuses it
without saying which parameter held it.
"""

from __future__ import annotations

from email.message import Message
from urllib.parse import unquote_to_bytes

from fastapi import Request

from postroom.text import check_tree, check_unicode

_REPLACED = "\ufffd"


async def checked_parameters(request: Request) -> None:
    """A route dependency: refuse invalid text in the path or query (422, naming it)."""
    query: bytes = request.scope.get("query_string", b"")
    for piece in query.split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        key = check_tree(_unquoted(name), field="a query parameter's name")
        check_tree(_unquoted(value), field=f"query.{key}")
    for key, value in request.path_params.items():
        if isinstance(value, str):
            check_tree(value, field=f"path.{key}")
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes):
        # The server decoded the path with U+FFFD for bytes that are not UTF-8: the
        # segment sent for a parameter holding one says which bytes they were.
        segments = [_unquoted(s, plus=False) for s in raw_path.split(b"/")]
        for key, value in request.path_params.items():
            if isinstance(value, str) and _REPLACED in value:
                for segment in segments:
                    if _as_server_decoded(segment) == value:
                        check_unicode(segment, field=f"path.{key}")


def _as_server_decoded(segment: str) -> str:
    return segment.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unquoted(raw: bytes, *, plus: bool = True) -> str:
    """Percent-decoded, bytes that are not UTF-8 kept as lone surrogates for the check."""
    if plus:
        raw = raw.replace(b"+", b" ")
    return unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


async def checked_json_body(request: Request) -> None:
    """A route dependency: refuse a JSON body with invalid text (422, naming the field)."""
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE") or not _is_json(request):
        return
    if not await request.body():
        return
    try:
        # Parsed once: FastAPI has read it through the same call, which keeps the result.
        body = await request.json()
    except ValueError:
        return  # not JSON: FastAPI has answered that already
    check_tree(body, field="body")


def _is_json(request: Request) -> bool:
    # The test FastAPI applies before it parses a body as JSON.
    value = request.headers.get("content-type")
    if not value:
        return True
    message = Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
