"""Work parties' languages: ``parties: {Role: {from: source, language_field: field}}``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from postroom.languages import check_language

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PARTY_KEYS = ("from", "language", "language_field")


class PartyLanguage(BaseModel):
    """The language of a work party's emails: fixed, or read from a case data field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(None, description="This party's emails are in this language")
    language_field: str | None = Field(
        None, description="The case data field holding this party's language (e.g. de)"
    )

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        return None if v is None else check_language(v, what=None)

    @field_validator("language_field")
    @classmethod
    def _field(cls, v: str | None) -> str | None:
        if v is not None and not _FIELD_NAME.fullmatch(v):
            raise ValueError(f"language_field {v[:64]!r} is not a field name")
        return v

    @model_validator(mode="after")
    def _one(self) -> PartyLanguage:
        if (self.language is None) == (self.language_field is None):
            raise ValueError("a party gives language or language_field (one of them)")
        return self


def party_mappings(data: Any) -> Any:
    """``parties: {Role: {from: source, language_field: f}}`` split into the source and
    its language: every reader of ``parties`` keeps seeing a source string."""
    if not isinstance(data, dict) or not isinstance(data.get("parties"), dict):
        return data
    parties: dict[str, Any] = {}
    languages: dict[str, Any] = dict(data.get("party_languages") or {})
    for role, spec in data["parties"].items():
        if not isinstance(spec, dict):
            parties[role] = spec
            continue
        unknown = sorted(str(k) for k in spec if k not in _PARTY_KEYS)
        if unknown or "from" not in spec:
            what = f"unknown key {unknown[0][:40]!r}" if unknown else "no from"
            raise ValueError(
                f"party {role}: {what}; a party is a source (creator, creator.reports_to, "
                "operator:<id>, data.<field>) or {from: source, language: de} or "
                "{from: source, language_field: <field>}"
            )
        parties[role] = spec["from"]
        given = {k: spec[k] for k in ("language", "language_field") if k in spec}
        if given:
            languages[role] = _party_language(role, given)
    return {**data, "parties": parties, "party_languages": languages}


def _party_language(role: Any, given: dict[str, Any]) -> PartyLanguage:
    """The party's language, its errors at ``parties.<role>``: where the YAML has it, not
    at the field it is kept in."""
    try:
        return PartyLanguage.model_validate(given)
    except ValidationError as exc:
        errors: list[InitErrorDetails] = []
        for err in exc.errors(include_url=False, include_input=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "{message}", {"message": message}),
                    loc=("parties", str(role), *err["loc"]),
                    input=given,
                )
            )
        raise ValidationError.from_exception_data("CaseType", errors) from None


PARTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "language": {"type": "string"},
                    "language_field": {"type": "string"},
                },
                "required": ["from"],
                "additionalProperties": False,
            },
        ]
    },
}
