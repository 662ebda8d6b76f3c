"""Rendering correspondence in an immutable, sandboxed Jinja2 environment.

Case data is passed as values in the context and is never compiled, so
``{{7*7}}`` typed into a case field is printed as those characters. A rendering is
bounded in memory and time (:mod:`~postroom.correspondence.limits`): going past a limit
is a :class:`~postroom.errors.TemplateLimitError` naming the template and the limit.
"""

from __future__ import annotations

import re
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
from jinja2.exceptions import SecurityError, TemplateAssertionError

from postroom.correspondence import limits
from postroom.correspondence.formatting import FormatError
from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.limits import MAX_LOOP_STEPS, MAX_RENDERED_CHARS, RENDER_SECONDS
from postroom.correspondence.mime import InlinePart
from postroom.correspondence.models import Correspondence
from postroom.correspondence.names import unknown_calls, unknown_variables
from postroom.correspondence.sandbox import LimitedSandbox
from postroom.errors import (
    FieldIssue,
    NotFoundError,
    TemplateError,
    TemplateLimitError,
    TemplateSecurityError,
    invalid_fields,
)
from postroom.languages import DEFAULT_LANGUAGE
from postroom.validation import single_line

_JOIN_EVERY = 1024

__all__ = ["MAX_LOOP_STEPS", "MAX_RENDERED_CHARS", "RENDER_SECONDS", "Rendered", "Renderer"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered email body: one-line subject, HTML and plain text.

    ``language`` is the language of the text used, ``version`` the number of the
    correspondence's version (None for inline text) and ``inline`` the correspondence's
    images that the HTML shows (``cid:ID``).
    """

    subject: str
    html: str
    text: str
    language: str | None = None
    version: int | None = None
    inline: tuple[InlinePart, ...] = ()


_CID = re.compile(r"cid:([A-Za-z0-9][A-Za-z0-9._-]{0,63})", re.IGNORECASE)


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
        self,
        records: Mapping[str, Correspondence],
        *,
        versions: Mapping[str, int] | None = None,
        time_limit: float = RENDER_SECONDS,
    ) -> None:
        self._records = dict(records)
        self._versions = dict(versions or {})
        self._time_limit = time_limit
        # Names this snapshot for processes that compile it again (see postroom.composing).
        self.snapshot = uuid.uuid4().hex
        self._html = self._environment({n: r.html for n, r in records.items()}, autoescape=True)
        self._plain = self._environment(
            {n: r.text if r.text is not None else html_to_text(r.html) for n, r in records.items()},
            autoescape=False,
        )
        # One pair of environments per language a translation is in, made when first used:
        # a template and the fragments it includes are read in the same language.
        self._translated: dict[str, tuple[Environment, Environment]] = {}
        self._compiled: dict[tuple[bool, str], Template] = {}

    @property
    def records(self) -> Mapping[str, Correspondence]:
        """The correspondence records this renderer renders."""
        return self._records

    @property
    def versions(self) -> Mapping[str, int]:
        """The version number of each record, where known."""
        return self._versions

    def _environments(self, language: str | None) -> tuple[Environment, Environment]:
        """The (HTML, plain) environments whose sources are in ``language`` where written."""
        if language is None or not any(language in r.translations for r in self._records.values()):
            return self._html, self._plain
        found = self._translated.get(language)
        if found is None:
            html: dict[str, str] = {}
            plain: dict[str, str] = {}
            for name, record in self._records.items():
                t = record.translations.get(language)
                source_html = t.html if t is not None else record.html
                source_text = t.text if t is not None else record.text
                html[name] = source_html
                plain[name] = source_text if source_text is not None else html_to_text(source_html)
            found = (
                self._environment(html, autoescape=True),
                self._environment(plain, autoescape=False),
            )
            self._translated[language] = found
        return found

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

    def check_source(self, source: str, *, what: str, fragment: bool = False) -> None:
        """Refuse a template that does not compile, includes an unknown correspondence, or
        uses a filter, test or variable that no rendering has (wherever in the template).

        A variable the template guards (``| default``, ``is defined``) is allowed; a
        fragment's variables are not checked: its context is whichever email includes it,
        which may set its own (``{% set sig = ... %}{% include 'Signature' %}``).
        """
        with _compiling(what):
            tree = self._plain.parse(source)
        for unknown in unknown_calls(self._plain, tree):
            raise TemplateError(f"{what}: {unknown}")
        with _compiling(what):
            # Compiled too: code generation nests deeper than parsing, and a template
            # that can never compile must be refused now, not at every send.
            self._plain.compile(tree)
        for name in meta.find_referenced_templates(tree):
            if name is not None and name not in self._records:
                raise TemplateError(f"{what}: includes unknown correspondence {name!r}")
        if fragment:
            return
        for unknown in unknown_variables(self._plain, tree):
            raise TemplateError(f"{what}: {unknown}")

    def check(self) -> None:
        """Check every record's subject, HTML and text (for apply, before anything is saved)."""
        for name, record in self._records.items():
            parts = [("subject", record.subject), ("html", record.html), ("text", record.text)]
            for tag, t in record.translations.items():
                # Named as the API names the field: translations.de.html
                parts.extend(
                    (f"translations.{tag}.{part}", source)
                    for part, source in (("subject", t.subject), ("html", t.html), ("text", t.text))
                )
            for part, source in parts:
                if source is not None:
                    self._check_part(source, name=name, part=part, fragment=record.is_fragment)

    def _check_part(self, source: str, *, name: str, part: str, fragment: bool) -> None:
        what = f"correspondence {name!r} {part}"
        try:
            self.check_source(source, what=what, fragment=fragment)
        except TemplateError as exc:
            # The record's field is named (the API lists it as body.subject), while the
            # message stays the one apply has always printed.
            message = str(exc).removeprefix(f"{what}: ")
            issue = FieldIssue(part, message)
            raise invalid_fields(type(exc), [issue], message=f"{what}: {message}") from None

    def render(
        self, name: str, context: Mapping[str, Any], *, language: str | None = None
    ) -> Rendered:
        """Render the correspondence ``name`` in ``language`` when it has that translation,
        else in its own language; a fragment cannot be sent on its own.

        Templates see ``language``: the language of the text rendered (Babel's filters
        format dates and amounts for it).
        """
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"no correspondence named {name!r}")
        if record.subject is None:
            raise TemplateError(f"correspondence {name!r} is a fragment (it has no subject)")
        translation = record.translations.get(language) if language is not None else None
        chosen = language if translation is not None else record.language
        html_env, plain_env = self._environments(chosen if translation is not None else None)
        subject_source = translation.subject if translation is not None else record.subject
        text_source = translation.text if translation is not None else record.text
        where = f" ({chosen})" if translation is not None else ""
        context = {**context, "language": chosen}
        # One budget for the whole email: its parts share the time and memory limits.
        token = limits.start(seconds=self._time_limit)
        try:
            html = self._run(html_env, name, context, what=f"correspondence {name!r}{where}")
            if text_source is not None:
                text = self._run(plain_env, name, context, what=f"text of {name!r}{where}")
            else:
                text = html_to_text(html)
            subject = self._run_string(
                subject_source or "", context, what=f"subject of {name!r}{where}"
            )
        finally:
            limits.stop(token)
        return Rendered(
            subject=single_line(subject),
            html=html,
            text=text,
            language=chosen,
            version=self._versions.get(name),
            inline=self._inline(record, html),
        )

    def render_inline(
        self,
        *,
        subject: str,
        body: str,
        context: Mapping[str, Any],
        language: str | None = None,
    ) -> Rendered:
        """Render an ad-hoc or inline subject and HTML body (which may include fragments,
        in ``language`` where they have it)."""
        chosen = language or DEFAULT_LANGUAGE
        context = {**context, "language": chosen}
        token = limits.start(seconds=self._time_limit)
        try:
            html = self._run_string(
                body, context, what="ad-hoc body", autoescape=True, language=language
            )
            subject_text = self._run_string(
                subject, context, what="ad-hoc subject", language=language
            )
        finally:
            limits.stop(token)
        return Rendered(
            subject=single_line(subject_text),
            html=html,
            text=html_to_text(html),
            language=language,
        )

    @staticmethod
    def _inline(record: Correspondence, html: str) -> tuple[InlinePart, ...]:
        """The record's images that ``html`` shows, in the order first shown."""
        if not record.images:
            return ()
        shown = dict.fromkeys(m.group(1) for m in _CID.finditer(html))
        return tuple(
            InlinePart(cid, image.filename, image.content_type, image.content)
            for cid in shown
            if (image := record.images.get(cid)) is not None
        )

    def _run_string(
        self,
        source: str,
        context: Mapping[str, Any],
        *,
        what: str,
        autoescape: bool = False,
        language: str | None = None,
    ) -> str:
        html_env, plain_env = self._environments(language)
        env = html_env if autoescape else plain_env
        key = (autoescape, source)
        template = self._compiled.get(key) if env in (self._html, self._plain) else None
        if template is None:
            with _compiling(what):
                template = env.from_string(source)
            if env in (self._html, self._plain) and len(self._compiled) < 1000:
                self._compiled[key] = template  # bounded: inline sources come from case types
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
            raise TemplateError(f"{what}: {_compile_problem(exc)}") from None
        except FormatError as exc:
            # Its message names the filter and the value already.
            raise TemplateError(f"{what}: {exc}") from None
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
        raise TemplateError(f"{what}: {_compile_problem(exc)}") from None
    except TemplateNotFound as exc:
        raise TemplateError(f"{what}: includes unknown correspondence {exc.name!r}") from None
    except RecursionError:
        # Jinja's parser and compiler recurse once per nesting level.
        raise TemplateLimitError(f"{what}: expressions or blocks nested too deeply") from None


def _compile_problem(exc: TemplateSyntaxError) -> str:
    """A syntax error as such; a name the sandbox does not have is no syntax error."""
    if isinstance(exc, TemplateAssertionError):
        return f"line {exc.lineno}: {exc.message}"
    return f"syntax error on line {exc.lineno}: {exc.message}"


def _described(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
