"""Text from a received mail's HTML, in time linear in its length whatever the markup.

``postroom.correspondence.html2text`` reads the well-formed HTML of Postroom's own
letters quickly, but hands anything unusual to ``html.parser``, which takes time that
grows with the square (or worse) of the length of hostile markup such as thousands of
unclosed ``<a`` tags: minutes for 20 kB. Received HTML is a stranger's, so it is first
reduced to markup html2text reads on its fast path: comments, declarations, scripts and
styles dropped, each tag rewritten as a bare ``<name>`` (links keep their ``href``), and
every other ``<`` escaped. Each step scans forward only.
"""

from __future__ import annotations

import html as html_module
import re

from postroom.correspondence.html2text import html_to_text

# At most 2,000 characters inside one tag (a longer "tag" is text): each "<" costs a
# bounded look ahead.
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]{0,30})((?:\s[^<>]{0,2000})?)\s*/?>|<")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_DECLARATION = re.compile(r"<[!?][^<>]{0,2000}>")
_RAW_TEXT = ("script", "style")
_ELEMENTS = {
    name: (re.compile(rf"<{name}\b", re.IGNORECASE), re.compile(rf"</{name}[^<>]{{0,100}}>", re.I))
    for name in _RAW_TEXT
}


def html_text(html: str) -> str:
    """Readable text for received ``html`` (paragraphs, lines, list items, link targets)."""
    return html_to_text(reduce_markup(html))


def reduce_markup(html: str) -> str:
    """``html`` as bare tags and text that html2text reads without its slow parser."""
    html = _drop_between(html, "<!--", "-->")
    for name in _RAW_TEXT:
        html = _drop_element(html, name)
    html = _DECLARATION.sub("", html)
    return _TAG.sub(_tag, html)


def _tag(match: re.Match[str]) -> str:
    closing, name, attributes = match.group(1, 2, 3)
    if name is None:
        return "&lt;"
    name = name.lower()
    if name in _RAW_TEXT:
        return ""  # an unclosed script or style: its tag goes, its text stays as text
    if name == "a" and not closing and attributes:
        found = _HREF.search(attributes)
        if found is not None:
            href = next(g for g in found.groups() if g is not None)
            return f'<a href="{html_module.escape(html_module.unescape(href))}">'
    return f"<{closing}{name}>"


def _drop_between(text: str, start: str, end: str) -> str:
    """``text`` without each ``start``...``end`` run; an unclosed one runs to the end."""
    pieces: list[str] = []
    position = 0
    while (found := text.find(start, position)) >= 0:
        pieces.append(text[position:found])
        close = text.find(end, found + len(start))
        if close < 0:
            return "".join(pieces)
        position = close + len(end)
    pieces.append(text[position:])
    return "".join(pieces)


def _drop_element(text: str, name: str) -> str:
    """``text`` without ``<name ...>...</name>`` elements (case-insensitive)."""
    opening, closing = _ELEMENTS[name]
    pieces: list[str] = []
    position = 0
    while (found := opening.search(text, position)) is not None:
        pieces.append(text[position : found.start()])
        end = closing.search(text, found.end())
        if end is None:
            return "".join(pieces)
        position = end.end()
    pieces.append(text[position:])
    return "".join(pieces)
