"""The names a template uses that the sandbox does not have: filters, tests, variables.

Jinja refuses an unknown filter at compile time only where it is always reached: one
inside ``{% if %}`` compiles, then fails every email that takes that branch. The
template's syntax tree is read instead, so every filter, test and variable is checked
before the template is saved or sent.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from jinja2 import Environment, meta, nodes

from postroom.correspondence.formatting import argument_problem

CONTEXT_NAMES = frozenset({"case", "party", "operator", "account", "language"})
"""What every rendering gives its templates (cases/context.py render_context, and the
``language`` the renderer adds)."""


@dataclass(frozen=True, slots=True)
class UnknownName:
    """A filter, test or variable the template uses and the sandbox does not have."""

    kind: str  # "filter", "test" or "variable"
    name: str
    lineno: int
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"uses unknown {self.kind} {self.name!r}{hint}"


def _closest(name: str, known: Collection[str]) -> str | None:
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class BadCall:
    """A formatting filter called with arguments it does not take."""

    message: str
    lineno: int

    def __str__(self) -> str:
        return self.message


def unknown_calls(env: Environment, tree: nodes.Template) -> Iterator[UnknownName | BadCall]:
    """The filters and tests ``tree`` uses that ``env`` does not have, and the formatting
    filters it calls with arguments they do not take, in source order."""
    found: list[UnknownName | BadCall] = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        if isinstance(node, nodes.Filter):
            kind, known = "filter", env.filters
        else:
            kind, known = "test", env.tests
        name = node.name
        if name not in known:
            found.append(UnknownName(kind, name, node.lineno, _closest(name, known)))
        elif isinstance(node, nodes.Filter):
            found.extend(_named_by_argument(env, node))
            found.extend(_bad_arguments(node))
    yield from sorted(found, key=lambda u: u.lineno)


def _bad_arguments(node: nodes.Filter) -> Iterator[BadCall]:
    """A formatting filter given too many, too few or unknown arguments: Python's
    TypeError would otherwise fail every email, long after the template was saved."""
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return  # format_date(*args): what it passes is known only when rendering
    keywords = [str(k.key) for k in node.kwargs if isinstance(k, nodes.Keyword)]
    problem = argument_problem(node.name, len(node.args), keywords)
    if problem is not None:
        yield BadCall(problem, node.lineno)


# Filters that take another filter's or test's name as a string argument, and which one:
# map("upper"), select("odd"), selectattr("x", "odd").
_NAME_ARGUMENT = {"map": (0, "filter"), "select": (0, "test"), "reject": (0, "test")}
_NAME_ARGUMENT |= {"selectattr": (1, "test"), "rejectattr": (1, "test")}


def _named_by_argument(env: Environment, node: nodes.Filter) -> Iterator[UnknownName]:
    """A filter or test named in a string argument (``map("format_curency")``)."""
    position, kind = _NAME_ARGUMENT.get(node.name, (-1, ""))
    if position < 0 or len(node.args) <= position:
        return  # map(attribute="x"), select() with no test: nothing named
    if node.name == "map" and any(k.key == "attribute" for k in node.kwargs):
        return
    argument = node.args[position]
    if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
        known = env.filters if kind == "filter" else env.tests
        if argument.value not in known:
            yield UnknownName(kind, argument.value, node.lineno, _closest(argument.value, known))


def unknown_variables(
    env: Environment, tree: nodes.Template, *, context: Collection[str] = CONTEXT_NAMES
) -> Iterator[UnknownName]:
    """The variables ``tree`` reads that neither its context nor the sandbox's globals give.

    A name the template guards (``x | default(...)``, ``x is defined``, anywhere in it) is
    one it expects may be missing: it is allowed. Call after :func:`unknown_calls` found
    nothing: Jinja's analysis compiles the tree.
    """
    known = {*context, *env.globals}
    missing = meta.find_undeclared_variables(tree) - known - _guarded(tree)
    if not missing:
        return
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if isinstance(node, nodes.Name) and node.name in missing:
            lines.setdefault(node.name, node.lineno)
    for name in sorted(missing, key=lambda n: (lines.get(n, 0), n)):
        yield UnknownName("variable", name, lines.get(name, 0), _closest(name, known))


_GUARDING_FILTERS = frozenset({"default", "d"})
_GUARDING_TESTS = frozenset({"defined", "undefined"})


def _guarded(tree: nodes.Template) -> set[str]:
    """The names the template uses as ``default``'s operand or tests with ``is defined``."""
    names: set[str] = set()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        guards = _GUARDING_FILTERS if isinstance(node, nodes.Filter) else _GUARDING_TESTS
        if node.name in guards and isinstance(node.node, nodes.Name):
            names.add(node.node.name)
    return names
