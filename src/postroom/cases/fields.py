"""Case data declared on a case type: its fields, their types, and checking data against them.

Values are stored as JSON: text, email and choice as strings, number as a JSON number,
money as a JSON number with at most two decimal places (a whole amount as an integer),
date as ``YYYY-MM-DD`` text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from postroom.errors import FieldIssue, InvalidFieldsError
from postroom.validation import check_address

if TYPE_CHECKING:
    from postroom.cases.models import CaseType

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONEY = re.compile(r"^[+-]?(?P<whole>\d+)(\.(?P<cents>\d*))?$")
MONEY_DIGITS = 13
MAX_FIELDS = 100


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    MONEY = "money"
    DATE = "date"
    EMAIL = "email"
    CHOICE = "choice"


class CaseField(BaseModel):
    """One declared piece of case data: its name, label, type and whether it is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=64)
    label: str = Field("", max_length=200)
    type: FieldType = FieldType.TEXT
    options: list[str] = Field(default_factory=list, max_length=200)
    required: bool = False
    default: Any = None
    help: str = Field("", max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The same rule as case data keys and ``data.<name>`` party sources.
        if not v.isidentifier():
            raise ValueError(f"field name {v!r} must be an identifier (letters, digits, _)")
        return v

    @model_validator(mode="after")
    def _check(self) -> CaseField:
        if self.type is FieldType.CHOICE:
            if not self.options:
                raise ValueError(f"field {self.name}: a choice needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError(f"field {self.name}: options must be unique")
            if any(not o.strip() for o in self.options):
                raise ValueError(f"field {self.name}: an option must not be empty")
        elif self.options:
            raise ValueError(f"field {self.name}: only a choice has options")
        if self.default is not None:
            try:
                typed = coerce(self, self.default)
            except ValueError as exc:
                raise ValueError(f"field {self.name}: default {exc}") from None
            # Stored as the type holds it: a date default typed as text stays one format.
            object.__setattr__(self, "default", typed)
        return self

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


def check_fields(fields: Sequence[CaseField]) -> None:
    """Field names are unique within a case type."""
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"a case type has at most {MAX_FIELDS} fields")
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise ValueError(f"field {f.name} is declared twice")
        seen.add(f.name)


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def coerce(field: CaseField, value: Any) -> Any:
    """``value`` as ``field``'s type holds it, or ``ValueError`` saying what is wrong.

    Text typed at the edges (the CLI's ``k=v``, a Studio form) arrives as strings, or
    as what :func:`postroom.cases.data.typed_value` made of them: both are accepted.
    """
    kind = field.type
    if kind is FieldType.TEXT:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return json.dumps(value)  # "12" typed on the command line became 12
        raise ValueError("must be text")
    if kind is FieldType.NUMBER:
        return _number(value)
    if kind is FieldType.MONEY:
        return _money(value)
    if kind is FieldType.DATE:
        return _date(value)
    if kind is FieldType.EMAIL:
        if not isinstance(value, str):
            raise ValueError("must be an email address")
        try:
            return check_address(value.strip(), what="it")
        except ValueError as exc:
            # "it 'x' is not a valid email address: …" without the repeated value.
            raise ValueError(str(exc).removeprefix(f"it {value.strip()!r}").lstrip(": ")) from None
    # A choice: a number typed on the command line matches the option written as text.
    text = json.dumps(value) if isinstance(value, int | float) else value
    if not isinstance(text, str) or text not in field.options:
        raise ValueError(f"must be one of: {', '.join(field.options)}")
    return text


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    number: int | float
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            raise ValueError(f"must be a number like 12 or 3.5, not {value!r}")
        number = int(text) if text.lstrip("+-").isdigit() else float(text)
    else:
        number = value
    if isinstance(number, float):
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
    return number


def _money(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be an amount")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite amount")
    text = value.strip() if isinstance(value, str) else str(Decimal(repr(value)))
    found = _MONEY.match(text)
    if found is None:
        raise ValueError(f"must be an amount like 1250 or 1250.50, not {value!r}")
    if len(found.group("whole").lstrip("0")) > MONEY_DIGITS:
        # Beyond this a JSON number (a double) no longer holds every cent exactly.
        raise ValueError(f"is too large: at most {MONEY_DIGITS} digits before the point")
    if len((found.group("cents") or "").rstrip("0")) > 2:
        raise ValueError("has more than 2 decimal places")
    amount = Decimal(text)
    if amount == amount.to_integral_value():
        return int(amount)
    return float(amount.quantize(Decimal("0.01")))


def _date(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ValueError(f"must be a date as YYYY-MM-DD, not {value!r}")


def validate_data(
    fields: Sequence[CaseField], data: Mapping[str, Any], *, what: str = ""
) -> dict[str, Any]:
    """``data`` checked against ``fields``: typed, defaults applied, blanks left out.

    A case type without fields takes any data, as before fields existed. One that
    declares them refuses a key it does not declare: a typo must not pass silently.
    Raises :class:`InvalidFieldsError` with one issue per wrong field.
    """
    if not fields:
        return dict(data)
    declared = {f.name: f for f in fields}
    issues: list[FieldIssue] = []
    for key in data:
        if key not in declared:
            issues.append(
                FieldIssue(
                    field=f"data.{key}",
                    message=f"is not a field of this case type (its fields: {', '.join(declared)})",
                )
            )
    typed: dict[str, Any] = {}
    for f in fields:
        value = data.get(f.name)
        if is_blank(value):
            if f.default is not None:
                typed[f.name] = f.default
            elif f.required:
                issues.append(FieldIssue(field=f"data.{f.name}", message="is required"))
            continue
        try:
            typed[f.name] = coerce(f, value)
        except ValueError as exc:
            issues.append(FieldIssue(field=f"data.{f.name}", message=str(exc)))
    if issues:
        raise InvalidFieldsError(issues, what=what)
    return typed


def sample_value(field: CaseField) -> Any:
    """A realistic value of ``field``'s type (its default when it has one)."""
    if field.default is not None:
        return field.default
    match field.type:
        case FieldType.NUMBER:
            return 3
        case FieldType.MONEY:
            return 1250
        case FieldType.DATE:
            return date.today().isoformat()
        case FieldType.EMAIL:
            return f"{field.name.replace('_', '.').lower()}@example.com"
        case FieldType.CHOICE:
            return field.options[0]
    person = ("name", "applicant", "customer", "person", "contact")
    if any(word in field.name.lower() for word in person):
        return "Jane Doe"
    return f"Sample {field.title.lower()}"


def sample_data(case_type: CaseType | None) -> dict[str, Any]:
    """Case data to preview a letter with: a realistic value for every declared field."""
    if case_type is None:
        return {}
    return {f.name: sample_value(f) for f in case_type.fields}
