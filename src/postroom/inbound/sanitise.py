"""Received HTML made harmless: an allow-list of tags, attributes and style properties.

Mail Postroom sent was written from its own templates; mail it received was written by
anyone. Its HTML is cleaned (ammonia, through nh3) before anything shows or serves it:
the Studio (in a sandboxed frame as well), the ``.eml`` viewer and the REST API's case
conversation. No script, style sheet, form, frame, event handler or ``javascript:``
link survives, nor an image from the network (which would report that it was read).
"""

from __future__ import annotations

from copy import deepcopy

import nh3

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
# An image is shown only from the message itself: one from the network would tell its
# sender when (and from where) the mail was read.
_IMAGE_SCHEMES = ("data:", "cid:")


def _attribute(element: str, attribute: str, value: str) -> str | None:
    if element == "img" and attribute == "src":
        return value if value.strip().lower().startswith(_IMAGE_SCHEMES) else None
    return value


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
        attribute_filter=_attribute,
    )
