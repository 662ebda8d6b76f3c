"""Every ``cid:`` an email's HTML shows must be an image the correspondence has.

An ``<img src="cid:logo">`` with no image ``logo`` is a broken picture in every reader
and nobody notices until a customer does; so apply refuses it, naming the content id.
A letter's HTML, its translations and the fragments it includes (they are sent with the
letter's images) are read as written; a content id made by the template
(``cid:{{ name }}``) cannot be read before rendering and is left to the renderer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from jinja2 import Environment, meta
from jinja2.exceptions import TemplateError as JinjaError

from postroom.correspondence.models import Correspondence
from postroom.errors import ConfigurationError, FieldIssue, invalid_fields

# Where a reader resolves a content id: an attribute (src, background) or a CSS url().
_SHOWN = re.compile(
    r"""(?:=\s*["']?|url\(\s*["']?)cid:([A-Za-z0-9][A-Za-z0-9._-]{0,63})(?![A-Za-z0-9._{-])""",
    re.IGNORECASE,
)
_PARSER = Environment(autoescape=True)  # parsing only: nothing is ever rendered with it


def shown_content_ids(html: str) -> list[str]:
    """The content ids ``html`` shows as written, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in _SHOWN.finditer(html)))


def check_content_ids(records: Mapping[str, Correspondence]) -> None:
    """Refuse a letter whose HTML (or a fragment it includes) shows an image it lacks."""
    for record in records.values():
        if record.is_fragment:
            continue  # sent only inside a letter, with that letter's images
        for field, html, through in _sources(records, record):
            for content_id in shown_content_ids(html):
                if content_id in record.images:
                    continue
                where = f" (in {through!r}, which it includes)" if through else ""
                have = ", ".join(sorted(record.images)) or "none"
                message = (
                    f"shows cid:{content_id}{where}, but the correspondence has no image "
                    f"{content_id!r} (its images: {have}); add it to images or correct the src"
                )
                raise invalid_fields(
                    ConfigurationError,
                    [FieldIssue(field, message)],
                    message=f"correspondence {record.name!r} {field}: {message}",
                )


def _sources(
    records: Mapping[str, Correspondence], record: Correspondence
) -> Iterator[tuple[str, str, str]]:
    """(field, html, fragment) for the letter ("" as fragment) and every fragment it reaches."""
    seen: set[str] = set()
    pending = [record.name]
    while pending:
        name = pending.pop()
        if name in seen or name not in records:
            continue
        seen.add(name)
        current = records[name]
        texts = [("html", current.html)]
        texts.extend(
            (f"translations.{tag}.html", t.html) for tag, t in current.translations.items()
        )
        for field, html in texts:
            if name == record.name:
                yield field, html, ""
            else:  # the letter's html reaches it (a translation's field names the letter's)
                yield "html", html, name
            pending.extend(_includes(html))


def _includes(html: str) -> list[str]:
    try:
        tree = _PARSER.parse(html)
    except JinjaError:
        return []  # the renderer's own check says what is wrong with it
    return [n for n in meta.find_referenced_templates(tree) if n is not None]
