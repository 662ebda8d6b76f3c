"""Which case data a case type's letters and steps read: ``case.data.x`` in templates,
``data.x`` party sources and ``{field: x}`` recipients.

Templates are read through Jinja's syntax tree, not by searching their text, so
``case.data.x``, ``case.data["x"]`` and ``case["data"].x`` are all found and text that
only looks like one (in a comment or a string) is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from jinja2 import Environment, TemplateSyntaxError, meta, nodes

from postroom.cases.fields import FieldType
from postroom.cases.models import CaseType, RecipientKind
from postroom.correspondence import Correspondence

# Only parsed, never rendered: the sandbox that renders them is not needed here.
_PARSER = Environment(autoescape=True)


def _key(node: nodes.Node, name: str) -> bool:
    """``node`` is ``<x>.name`` or ``<x>["name"]``."""
    if isinstance(node, nodes.Getattr):
        return bool(node.attr == name)
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and node.arg.value == name
    return False


def _is_case_data(node: nodes.Node) -> bool:
    if not _key(node, "data"):
        return False
    inner = node.node  # type: ignore[attr-defined]
    return isinstance(inner, nodes.Name) and inner.name == "case"


def _field_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    return None


def source_references(source: str) -> tuple[set[str], set[str]]:
    """The ``case.data`` keys ``source`` reads, and the correspondence it includes."""
    try:
        tree = _PARSER.parse(source)
    except (TemplateSyntaxError, RecursionError):
        return set(), set()  # apply refuses such a template with its own message
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr | nodes.Getitem) and _is_case_data(node.node):
            name = _field_name(node)
            if name is not None:
                found.add(name)
    includes = {n for n in meta.find_referenced_templates(tree) if n is not None}
    return found, includes


def correspondence_references(records: Mapping[str, Correspondence], name: str) -> set[str]:
    """The ``case.data`` keys correspondence ``name`` reads, with what it includes."""
    found: set[str] = set()
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        record = records.get(current)
        if current in seen or record is None:
            continue
        seen.add(current)
        for source in (record.subject, record.html, record.text):
            if source is not None:
                keys, includes = source_references(source)
                found |= keys
                pending.extend(includes)
    return found


def _step_references(
    ct: CaseType, records: Mapping[str, Correspondence]
) -> Iterator[tuple[str, str]]:
    """(where, key) for every case data key a step or party of ``ct`` reads."""
    for role, source in ct.parties.items():
        if source.startswith("data."):
            yield f"party {role}", source.removeprefix("data.")
    for step in ct.steps:
        label = f"step {step.name or step.on}"
        for r in (*step.to, *step.cc, *step.bcc):
            if r.kind is RecipientKind.FIELD:
                yield f"{label} (recipient)", r.value
        if step.correspondence:
            for key in sorted(correspondence_references(records, step.correspondence)):
                yield f"{label} (correspondence {step.correspondence})", key
        for inline in (step.subject, step.body):
            if inline is not None:
                keys, includes = source_references(inline)
                for key in sorted(keys):
                    yield label, key
                for included in sorted(includes):
                    for key in sorted(correspondence_references(records, included)):
                        yield f"{label} (correspondence {included})", key


def undeclared_references(ct: CaseType, records: Mapping[str, Correspondence]) -> list[str]:
    """Warnings for case data that ``ct``'s steps read but its fields do not declare.

    Only for a case type that declares fields: one without them takes any data.
    """
    if not ct.fields:
        return []
    declared = {f.name for f in ct.fields}
    warnings: list[str] = []
    for where, key in _step_references(ct, records):
        message = (
            f"case type {ct.class_name}: {where} reads case.data.{key}, which no field "
            f"declares (fields: {', '.join(sorted(declared))})"
        )
        if key not in declared and message not in warnings:
            warnings.append(message)
    for role, spec in ct.party_languages.items():
        if spec.language_field is not None and spec.language_field not in declared:
            warnings.append(
                f"case type {ct.class_name}: party {role} reads its language from "
                f"case.data.{spec.language_field}, which no field declares "
                f"(fields: {', '.join(sorted(declared))})"
            )
    return warnings + _addresses_not_emails(ct)


def _addresses_not_emails(ct: CaseType) -> list[str]:
    """A party or recipient takes its address from a declared field that is not an email."""
    uses = [(f"party {role}", s.removeprefix("data.")) for role, s in ct.parties.items()]
    uses += [
        (f"step {step.name or step.on}", r.value)
        for step in ct.steps
        for r in (*step.to, *step.cc, *step.bcc)
        if r.kind is RecipientKind.FIELD
    ]
    warnings = []
    for where, name in uses:
        declared = ct.field(name)
        if declared is not None and declared.type is not FieldType.EMAIL:
            warnings.append(
                f"case type {ct.class_name}: {where} takes an address from field {name}, "
                f"a {declared.type} field; declare it as type email"
            )
    return warnings
