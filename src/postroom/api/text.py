"""JSON request bodies hold valid Unicode without NUL, checked once for every route.

``"\\ud800"`` and ``"\\u0000"`` are valid JSON escapes, but the text they give can be
neither encoded as UTF-8 nor stored by PostgreSQL. Pydantic lets some such strings
through (a plain ``str`` field is not re-encoded), so the parsed body is walked here and
the first bad string refused with its field, e.g. ``body.emails[3].subject``.
"""

from __future__ import annotations

from email.message import Message

from fastapi import Request

from postroom.text import check_tree


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
