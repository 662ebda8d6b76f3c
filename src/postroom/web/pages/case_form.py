"""The Studio's create-case form: built from the case type's fields, read back from a post.

The form says before submitting which emails the creation sends and to whom, and asks
for the creator when a work party is found through them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from postroom.cases.data import typed_value
from postroom.cases.fields import FieldType
from postroom.cases.models import CaseType, Recipient, RecipientKind, SendEmailStep
from postroom.errors import ConfigurationError, InvalidFieldsError
from postroom.web import forms

CREATOR_SOURCES = ("creator", "creator.reports_to")
INPUT_TYPES = {
    FieldType.TEXT: "text",
    FieldType.NUMBER: "number",
    FieldType.MONEY: "number",
    FieldType.DATE: "date",
    FieldType.EMAIL: "email",
}


@dataclass(frozen=True, slots=True)
class PlannedEmail:
    """An email the creation will send: its step and its recipients, as roles."""

    name: str
    recipients: list[str]
    delay_seconds: int | None


def needs_creator(ctype: CaseType | None) -> bool:
    """A work party of ``ctype`` is the creator or the creator's manager."""
    return ctype is not None and any(s in CREATOR_SOURCES for s in ctype.parties.values())


def _party_source(ctype: CaseType, source: str) -> str:
    if source == "creator":
        return "the creator"
    if source == "creator.reports_to":
        return "the creator's manager"
    if source.startswith("operator:"):
        return f"operator {source.removeprefix('operator:')}"
    name = source.removeprefix("data.")
    declared = ctype.field(name)
    return f"the {declared.title if declared else name} field"


def _recipient(ctype: CaseType, r: Recipient) -> str:
    if r.kind is RecipientKind.PARTY:
        source = ctype.parties.get(r.value, "")
        return f"{r.value} ({_party_source(ctype, source)})"
    if r.kind is RecipientKind.OPERATOR:
        return f"operator {r.value}"
    if r.kind is RecipientKind.FIELD:
        declared = ctype.field(r.value)
        return f"the {declared.title if declared else r.value} field"
    return r.value


def _planned(ctype: CaseType, step: SendEmailStep) -> PlannedEmail:
    recipients = [
        f"{header} {_recipient(ctype, r)}"
        for header, group in (("to", step.to), ("cc", step.cc), ("bcc", step.bcc))
        for r in group
    ]
    name = step.name or step.correspondence or step.subject or "an email"
    return PlannedEmail(name=name, recipients=recipients, delay_seconds=step.delay_seconds)


def creation_emails(ctype: CaseType | None) -> list[PlannedEmail]:
    """The emails creating a case of ``ctype`` sends (its ``on: created`` steps)."""
    if ctype is None:
        return []
    return [_planned(ctype, s) for s in ctype.steps if s.on.fires_on(event="created", status=None)]


def field_input(ctype: CaseType) -> list[dict[str, Any]]:
    """What the template needs to draw each field's input."""
    return [
        {
            "field": f,
            "input": INPUT_TYPES.get(f.type, "text"),
            "step": "0.01" if f.type is FieldType.MONEY else "any",
            "default": "" if f.default is None else str(f.default),
        }
        for f in ctype.fields
    ]


def free_data(value: str) -> dict[str, Any]:
    """Case data typed as a JSON object, or as ``name = value`` lines."""
    if value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ConfigurationError(f"case data is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ConfigurationError("case data must be a JSON object")
        return parsed
    # As on the command line: a value that reads as JSON (a number, true) keeps its type.
    return {k: typed_value(v) for k, v in forms.pairs(value, what="case data").items()}


def posted_values(form: FormData) -> dict[str, str]:
    """What was typed in the form's data inputs, to show again if it is refused."""
    return {
        key: forms.raw(form, key)
        for key in form
        if isinstance(key, str) and (key == "data" or key.startswith("data."))
    }


def posted_data(form: FormData, ctype: CaseType | None) -> dict[str, Any]:
    """The case data of a post.

    A case type with fields posts one input per field (``data.<name>``), as text: the
    service types it. Without fields, or when a script posts the free-form ``data``
    box, that box is read as before.
    """
    typed = {
        key.removeprefix("data."): value
        for key, value in posted_values(form).items()
        if key.startswith("data.")
    }
    if ctype is not None and ctype.fields and (typed or "data" not in form):
        return {k: v for k, v in typed.items() if v.strip()}
    return free_data(forms.raw(form, "data"))


def field_errors(
    exc: InvalidFieldsError, ctype: CaseType | None
) -> tuple[dict[str, str], list[str]]:
    """Each issue next to its field; those of no field of the form, listed apart."""
    declared = {f.name for f in ctype.fields} if ctype is not None else set()
    by_field: dict[str, str] = {}
    others: list[str] = []
    for issue in exc.issues:
        name = issue.field.removeprefix("data.")
        if issue.field == f"data.{name}" and name in declared and name not in by_field:
            by_field[name] = issue.message
        else:
            others.append(f"{issue.field}: {issue.message}")
    return by_field, others
