"""Plain-text alternative derived from HTML, for correspondence without a text part.

Letters are well-formed HTML, so a regular-expression scan reads them in a fraction of
the standard library parser's time; anything it is not sure of (scripts, comments,
a ``<`` that opens no tag) goes to ``html.parser``, which gives the same text.
"""

from __future__ import annotations

import html as html_module
import re
from html.parser import HTMLParser

_BLOCK = {
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "table",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
}
_LINE = {"br", "tr", "li"}
_SKIP = {"script", "style", "head", "title"}
_SPACES = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n\n")
        elif tag in _LINE:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and not href.startswith(("#", "javascript:")):
                self.parts.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(_SPACES.sub(" ", data))


_TOKEN = re.compile(
    r"""<(/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z_:][-a-zA-Z0-9_:.]*"""
    r"""(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)\s*(/?)>|([^<]+)"""
)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_UNSURE = re.compile(r"<(?:script|style|!|\?)", re.IGNORECASE)


def _scan(html: str) -> list[str] | None:
    """The text pieces of well-formed ``html``, as the parser would give them; else None."""
    if _UNSURE.search(html):
        return None
    # The extractor's logic, inlined: a letter is a few hundred tokens, and the method
    # calls per token cost more than the matching.
    parts: list[str] = []
    append = parts.append
    hrefs: list[str | None] = []
    skip = 0
    position = 0

    def end(tag: str) -> None:
        nonlocal skip
        if tag in _SKIP:
            skip = max(0, skip - 1)
        elif tag in _BLOCK:
            append("\n\n")
        elif tag == "a" and hrefs:
            href = hrefs.pop()
            if href and not href.startswith(("#", "javascript:")):
                append(f" <{href}>")

    for match in _TOKEN.finditer(html):
        if match.start() != position:
            return None  # a "<" that opens no tag: let the real parser decide
        position = match.end()
        closing, tag, attributes, self_closing, text = match.groups()
        if text is not None:
            if not skip:
                append(_SPACES.sub(" ", html_module.unescape(text) if "&" in text else text))
            continue
        tag = tag.lower()
        if closing:
            end(tag)
            continue
        if tag in _SKIP:
            skip += 1
        elif tag in _BLOCK:
            append("\n\n")
        elif tag in _LINE:
            append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            append("\t")
        if tag == "a":
            found = _HREF.search(attributes or "")
            value = None
            if found is not None:
                value = html_module.unescape(next(g for g in found.groups() if g is not None))
            hrefs.append(value)
        if self_closing:
            end(tag)  # <br/> is a start tag and an end tag to the parser
    return parts if position == len(html) else None


def html_to_text(html: str, *, scan: bool = True) -> str:
    """Readable text for ``html``: paragraphs, line breaks, list items and link targets.

    ``scan=False`` always uses ``html.parser`` (the reference the scan must match).
    """
    parts = _scan(html) if scan else None
    if parts is None:
        parser = _TextExtractor()
        parser.feed(html)
        parser.close()
        parts = parser.parts
    text = "".join(parts)
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
