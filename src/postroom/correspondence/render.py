"""Rendering correspondence in an immutable, sandboxed Jinja2 environment.

Case data is passed as values in the context and is never compiled, so
``{{7*7}}`` typed into a case field is printed as those characters.
"""

from __future__ import annotations

from collections.abc import Mapping
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
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.models import Correspondence
from postroom.errors import NotFoundError, TemplateError, TemplateSecurityError
from postroom.validation import single_line

MAX_RENDERED_CHARS = 5_000_000


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

    def __init__(self, records: Mapping[str, Correspondence]) -> None:
        self._records = dict(records)
        self._html = self._environment({n: r.html for n, r in records.items()}, autoescape=True)
        self._plain = self._environment(
            {n: r.text if r.text is not None else html_to_text(r.html) for n, r in records.items()},
            autoescape=False,
        )
        self._compiled: dict[tuple[bool, str], Template] = {}

    @staticmethod
    def _environment(sources: Mapping[str, str], *, autoescape: bool) -> Environment:
        return ImmutableSandboxedEnvironment(
            loader=_MappingLoader(sources),
            autoescape=autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            cache_size=1000,
        )

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render the correspondence ``name``; a fragment cannot be sent on its own."""
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"no correspondence named {name!r}")
        if record.subject is None:
            raise TemplateError(f"correspondence {name!r} is a fragment (it has no subject)")
        html = self._run(self._html, name, context, what=f"correspondence {name!r}")
        if record.text is not None:
            text = self._run(self._plain, name, context, what=f"text of {name!r}")
        else:
            text = html_to_text(html)
        subject = self._run_string(record.subject, context, what=f"subject of {name!r}")
        return Rendered(subject=single_line(subject), html=html, text=text)

    def render_inline(self, *, subject: str, body: str, context: Mapping[str, Any]) -> Rendered:
        """Render a step's inline subject and HTML body (which may include fragments)."""
        html = self._run_string(body, context, what="inline body", autoescape=True)
        subject_text = self._run_string(subject, context, what="inline subject")
        return Rendered(subject=single_line(subject_text), html=html, text=html_to_text(html))

    def _run_string(
        self, source: str, context: Mapping[str, Any], *, what: str, autoescape: bool = False
    ) -> str:
        key = (autoescape, source)
        template = self._compiled.get(key)
        if template is None:
            env = self._html if autoescape else self._plain
            try:
                template = env.from_string(source)
            except TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{what}: syntax error on line {exc.lineno}: {exc.message}"
                ) from None
            if len(self._compiled) < 1000:  # bounded: inline sources come from case types
                self._compiled[key] = template
        return self._guard(lambda: template.render(context), what)

    def _run(self, env: Environment, name: str, context: Mapping[str, Any], *, what: str) -> str:
        try:
            template = env.get_template(name)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{what}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
        return self._guard(lambda: template.render(context), what)

    @staticmethod
    def _guard(render: Any, what: str) -> str:
        try:
            out: str = render()
        except SecurityError as exc:
            raise TemplateSecurityError(
                f"{what}: the template sandbox refused an unsafe expression ({exc})"
            ) from None
        except UndefinedError as exc:
            raise TemplateError(
                f"{what}: {exc.message}; use '| default(...)' for optional fields"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{what}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        except (TypeError, ValueError, ArithmeticError, OverflowError, LookupError) as exc:
            raise TemplateError(f"{what}: {type(exc).__name__}: {exc}") from None
        if len(out) > MAX_RENDERED_CHARS:
            raise TemplateError(f"{what}: rendered to more than {MAX_RENDERED_CHARS} characters")
        return out
