"""Received HTML made harmless before the Studio frames it: an allow-list, then a sandbox.

Mail Postroom sent was written from its own templates; mail it received was written by
anyone. Its HTML is cleaned to an allow-list of tags, attributes and style properties
(ammonia, through nh3), then served like the ``.eml`` viewer's bodies: from its own URL,
with :data:`postroom.web.mail.BODY_POLICY` (no scripts, no fetches, a sandbox), in a
sandboxed frame. Either layer alone would stop a script; both together also keep out
forms, remote images that report a read, and links that navigate the frame.
"""

from __future__ import annotations

from copy import deepcopy

import nh3
from fastapi.responses import HTMLResponse

from postroom.web.mail import BODY_POLICY

# What changes how a message reads, and nothing that positions or loads anything.
_STYLE_PROPERTIES = frozenset(
    {
        "background-color", "border", "border-bottom", "border-collapse", "border-color",
        "border-left", "border-right", "border-style", "border-top", "border-width", "color",
        "font", "font-family", "font-size", "font-style", "font-weight", "height",
        "letter-spacing", "line-height", "list-style-type", "margin", "margin-bottom",
        "margin-left", "margin-right", "margin-top", "padding", "padding-bottom",
        "padding-left", "padding-right", "padding-top", "text-align", "text-decoration",
        "text-indent", "text-transform", "vertical-align", "white-space", "width",
    }
)  # fmt: skip
_ATTRIBUTES: dict[str, set[str]] = deepcopy(nh3.ALLOWED_ATTRIBUTES)
_ATTRIBUTES["*"] = {"style", "title", "lang", "dir"}
_ATTRIBUTES.setdefault("td", set()).update({"width", "valign", "bgcolor"})
_ATTRIBUTES.setdefault("table", set()).update({"width", "cellpadding", "cellspacing", "border"})
# data: for inline images (the body policy allows no other image source); links keep
# their address to be read, but open nowhere (see _LINKS).
_SCHEMES = {"http", "https", "mailto", "data", "cid"}
# A link's target: a new window, which the frame's sandbox (no allow-popups) refuses, so
# a click navigates neither the frame nor the Studio.
_LINKS = {"a": {"target": "_blank"}}
EMPTY_BODY = "<p>This email has no HTML part.</p>"


def sanitised(html: str) -> str:
    """``html`` reduced to the allow-list: no script, style sheet, form, frame or handler."""
    return nh3.clean(
        html,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        filter_style_properties=set(_STYLE_PROPERTIES),
        set_tag_attribute_values=_LINKS,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


def framed(html: str | None) -> HTMLResponse:
    """Received HTML, sanitised, as a page for a sandboxed frame (with its strict policy)."""
    response = HTMLResponse(sanitised(html) if html else EMPTY_BODY)
    response.headers["Content-Security-Policy"] = BODY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
