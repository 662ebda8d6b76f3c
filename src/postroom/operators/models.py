"""The operator record."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from postroom.languages import check_language
from postroom.validation import check_address, check_display_name, check_record_name


class Operator(BaseModel):
    """A user of the case application, with the manager they report to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    email: str | None = None
    reports_to: str | None = None
    language: str | None = None  # the language of the emails sent to them

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        return None if not v else check_language(v, what=None)

    @field_validator("id", "reports_to")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return None if v is None else check_record_name(v, what="operator id")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_display_name(v, what="operator name")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if not v else check_address(v, what="operator email")
