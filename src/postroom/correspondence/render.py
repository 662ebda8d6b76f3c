"""Rendering correspondence in an immutable, sandboxed Jinja2 environment.

Case data is passed as values in the context and is never compiled, so
``{{7*7}}`` typed into a case field is printed as those characters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextvars import ContextVar
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
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.models import Correspondence
from postroom.errors import NotFoundError, TemplateError, TemplateSecurityError
from postroom.validation import single_line

MAX_RENDERED_CHARS = 5_000_000
MAX_LOOP_STEPS = 2_000_000
"""Iterations of ``range`` loops one rendering may take: nested loops stay bounded in time."""

_steps_left: ContextVar[list[int] | None] = ContextVar("postroom_template_steps", default=None)


class _BudgetedRange:
    """``range`` for templates: each step taken counts against the rendering's budget."""

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)  # refuses ranges over MAX_RANGE items

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[int]:
        budget = _steps_left.get()
        for value in self._range:
            if budget is not None:
                budget[0] -= 1
                if budget[0] < 0:
                    raise SecurityError(f"loops took more than {MAX_LOOP_STEPS} steps")
            yield value


def _too_big(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_RENDERED_CHARS
    )


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, also refusing single expressions that would allocate hugely."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and (
            (
                isinstance(left, str | list | tuple)
                and isinstance(right, int)
                and len(left) * right > MAX_RENDERED_CHARS
            )
            or (
                isinstance(right, str | list | tuple)
                and isinstance(left, int)
                and len(right) * left > MAX_RENDERED_CHARS
            )
        ):
            raise SecurityError("a repetition would exceed the output limit")
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise SecurityError("an exponent over 1000 is refused")
        if operator == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            if any(_too_big(v) for v in values):
                raise SecurityError("a format width over the output limit is refused")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # ljust/center/zfill and friends take a size: refuse sizes past the output limit.
        if any(_too_big(v) for v in (*args, *kwargs.values())):
            raise SecurityError("an argument over the output limit is refused")
        return super().call(__context, __obj, *args, **kwargs)


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
        env = _Sandbox(
            loader=_MappingLoader(sources),
            autoescape=autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            cache_size=1000,
        )
        env.globals["range"] = _BudgetedRange
        return env

    def check_source(self, source: str, *, what: str) -> None:
        """Refuse a template that does not compile or includes an unknown correspondence."""
        try:
            tree = self._plain.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{what}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
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
                    self.check_source(source, what=f"correspondence {name!r} {part}")

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
        return self._guard(template, context, what)

    def _run(self, env: Environment, name: str, context: Mapping[str, Any], *, what: str) -> str:
        try:
            template = env.get_template(name)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{what}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
        return self._guard(template, context, what)

    @staticmethod
    def _guard(template: Template, context: Mapping[str, Any], what: str) -> str:
        # Streamed, so that a template producing too much stops at the limit instead of
        # building all of its output in memory first.
        parts: list[str] = []
        size = 0
        token = _steps_left.set([MAX_LOOP_STEPS])
        try:
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    break
                parts.append(chunk)
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
            raise TemplateError(f"{what}: recursion too deep") from None
        except (TypeError, ValueError, ArithmeticError, OverflowError, LookupError) as exc:
            raise TemplateError(f"{what}: {type(exc).__name__}: {exc}") from None
        finally:
            _steps_left.reset(token)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError(f"{what}: rendered to more than {MAX_RENDERED_CHARS} characters")
        return "".join(parts)
