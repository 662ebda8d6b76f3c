"""Rendering correspondence in an immutable, sandboxed Jinja2 environment.

Case data is passed as values in the context and is never compiled, so
``{{7*7}}`` typed into a case field is printed as those characters. A rendering is
bounded in memory and time (:mod:`~postroom.correspondence.limits`): going past a limit
is a :class:`~postroom.errors.TemplateLimitError` naming the template and the limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
)
from jinja2.exceptions import SecurityError

from postroom.correspondence import limits
from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.limits import MAX_LOOP_STEPS, MAX_RENDERED_CHARS, RENDER_SECONDS
from postroom.correspondence.models import Correspondence
from postroom.correspondence.sandbox import LimitedSandbox
from postroom.errors import (
    FieldIssue,
    NotFoundError,
    TemplateError,
    TemplateLimitError,
    TemplateSecurityError,
    invalid_fields,
)
from postroom.validation import single_line

_JOIN_EVERY = 1024

__all__ = ["MAX_LOOP_STEPS", "MAX_RENDERED_CHARS", "RENDER_SECONDS", "Rendered", "Renderer"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered email body: one-line subject, HTML and plain text."""

    subject: str
    html: str
    text: str


class _MappingLoader(BaseLoader):
    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = sources

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        if template not in self._sources:
            raise TemplateNotFound(template)
        return self._sources[template], template, lambda: True


class Renderer:
    """Renders correspondence from one snapshot of the correspondence records."""

    def __init__(
        self, records: Mapping[str, Correspondence], *, time_limit: float = RENDER_SECONDS
    ) -> None:
        self._records = dict(records)
        self._time_limit = time_limit
        # Names this snapshot for processes that compile it again (see postroom.composing).
        self.snapshot = uuid.uuid4().hex
        self._html = self._environment({n: r.html for n, r in records.items()}, autoescape=True)
        self._plain = self._environment(
            {n: r.text if r.text is not None else html_to_text(r.html) for n, r in records.items()},
            autoescape=False,
        )
        self._compiled: dict[tuple[bool, str], Template] = {}

    @property
    def records(self) -> Mapping[str, Correspondence]:
        """The correspondence records this renderer renders."""
        return self._records

    @property
    def time_limit(self) -> float:
        """Seconds one email's rendering may take."""
        return self._time_limit

    @staticmethod
    def _environment(sources: Mapping[str, str], *, autoescape: bool) -> Environment:
        return LimitedSandbox(
            loader=_MappingLoader(sources),
            autoescape=autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            cache_size=1000,
        )

    def check_source(self, source: str, *, what: str) -> None:
        """Refuse a template that does not compile or includes an unknown correspondence."""
        with _compiling(what):
            tree = self._plain.parse(source)
            # Compiled too: code generation nests deeper than parsing, and a template
            # that can never compile must be refused now, not at every send.
            self._plain.compile(tree)
        for name in meta.find_referenced_templates(tree):
            if name is not None and name not in self._records:
                raise TemplateError(f"{what}: includes unknown correspondence {name!r}")

    def check(self) -> None:
        """Check every record's subject, HTML and text (for apply, before anything is saved)."""
        for name, record in self._records.items():
            for part, source in (
                ("subject", record.subject),
                ("html", record.html),
                ("text", record.text),
            ):
                if source is not None:
                    self._check_part(source, name=name, part=part)

    def _check_part(self, source: str, *, name: str, part: str) -> None:
        what = f"correspondence {name!r} {part}"
        try:
            self.check_source(source, what=what)
        except TemplateError as exc:
            # The record's field is named (the API lists it as body.subject), while the
            # message stays the one apply has always printed.
            message = str(exc).removeprefix(f"{what}: ")
            issue = FieldIssue(part, message)
            raise invalid_fields(type(exc), [issue], message=f"{what}: {message}") from None

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render the correspondence ``name``; a fragment cannot be sent on its own."""
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"no correspondence named {name!r}")
        if record.subject is None:
            raise TemplateError(f"correspondence {name!r} is a fragment (it has no subject)")
        # One budget for the whole email: its parts share the time and memory limits.
        token = limits.start(seconds=self._time_limit)
        try:
            html = self._run(self._html, name, context, what=f"correspondence {name!r}")
            if record.text is not None:
                text = self._run(self._plain, name, context, what=f"text of {name!r}")
            else:
                text = html_to_text(html)
            subject = self._run_string(record.subject, context, what=f"subject of {name!r}")
        finally:
            limits.stop(token)
        return Rendered(subject=single_line(subject), html=html, text=text)

    def render_inline(self, *, subject: str, body: str, context: Mapping[str, Any]) -> Rendered:
        """Render an ad-hoc or inline subject and HTML body (which may include fragments)."""
        token = limits.start(seconds=self._time_limit)
        try:
            html = self._run_string(body, context, what="ad-hoc body", autoescape=True)
            subject_text = self._run_string(subject, context, what="ad-hoc subject")
        finally:
            limits.stop(token)
        return Rendered(subject=single_line(subject_text), html=html, text=html_to_text(html))

    def _run_string(
        self, source: str, context: Mapping[str, Any], *, what: str, autoescape: bool = False
    ) -> str:
        key = (autoescape, source)
        template = self._compiled.get(key)
        if template is None:
            env = self._html if autoescape else self._plain
            with _compiling(what):
                template = env.from_string(source)
            if len(self._compiled) < 1000:  # bounded: inline sources come from case types
                self._compiled[key] = template
        return self._guard(template, context, what)

    def _run(self, env: Environment, name: str, context: Mapping[str, Any], *, what: str) -> str:
        with _compiling(what):
            template = env.get_template(name)
        return self._guard(template, context, what)

    @staticmethod
    def _guard(template: Template, context: Mapping[str, Any], what: str) -> str:
        # Streamed, so that a template producing too much stops at the limit instead of
        # building all of its output in memory first.
        parts: list[str] = []
        pending: list[str] = []
        size = 0
        try:
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    break
                pending.append(chunk)
                if len(pending) == _JOIN_EVERY:  # many small chunks cost more than their text
                    parts.append("".join(pending))
                    pending.clear()
        except limits.LimitExceeded as exc:
            raise TemplateLimitError(f"{what}: {exc}") from None
        except MemoryError:
            # Every allocation is sized first; this is the last line if one was missed.
            raise TemplateLimitError(
                f"{what}: the template needed more memory than there is"
            ) from None
        except SecurityError as exc:
            raise TemplateSecurityError(
                f"{what}: the template sandbox refused an unsafe expression ({exc})"
            ) from None
        except UndefinedError as exc:
            raise TemplateError(
                f"{what}: the template uses a value this email does not have ({exc.message}); "
                "give it in the case data, or use '| default(...)' for optional fields"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{what}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        except RecursionError:
            raise TemplateLimitError(f"{what}: recursion too deep") from None
        except Exception as exc:
            # A template is code its author wrote: whatever it raises (a filter given a
            # wrong argument, an assertion in Jinja's truncate, a test that does not
            # exist) is that template's error, never the caller's crash.
            raise TemplateError(f"{what}: {_described(exc)}") from None
        if size > MAX_RENDERED_CHARS:
            raise TemplateLimitError(
                f"{what}: rendered to more than {MAX_RENDERED_CHARS} characters"
            )
        return "".join([*parts, *pending])


@contextmanager
def _compiling(what: str) -> Iterator[None]:
    """Compile errors as :class:`TemplateError` naming the template."""
    try:
        yield
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{what}: syntax error on line {exc.lineno}: {exc.message}") from None
    except TemplateNotFound as exc:
        raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
    except RecursionError:
        # Jinja's parser and compiler recurse once per nesting level.
        raise TemplateLimitError(f"{what}: expressions or blocks nested too deeply") from None


def _described(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
