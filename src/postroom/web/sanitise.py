"""Received HTML as a page for the Studio's sandboxed frame: sanitised, then a strict policy.

The allow-list lives in :mod:`postroom.inbound.sanitise` (the REST API uses it too);
here the result is served like the ``.eml`` viewer's bodies: from its own URL, with
:data:`postroom.web.mail.BODY_POLICY` (no scripts, no fetches, a sandbox), in a
sandboxed frame. Either layer alone would stop a script; both together also keep out
forms, remote images that report a read, and links that navigate the frame.
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from postroom.inbound.sanitise import sanitised
from postroom.web.mail import BODY_POLICY

__all__ = ["EMPTY_BODY", "framed", "sanitised"]

EMPTY_BODY = "<p>This email has no HTML part.</p>"


def framed(html: str | None) -> HTMLResponse:
    """Received HTML, sanitised, as a page for a sandboxed frame (with its strict policy)."""
    response = HTMLResponse(sanitised(html) if html else EMPTY_BODY)
    response.headers["Content-Security-Policy"] = BODY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
