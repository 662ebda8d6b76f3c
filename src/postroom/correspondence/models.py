"""The correspondence record: a named email template or a fragment of one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


class Correspondence(BaseModel):
    """A template with subject, HTML and optional text; without a subject it is a fragment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    subject: str | None = None
    html: str
    text: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Spaces are allowed: Pega correspondence names read like titles.
        if not v.strip() or any(ord(c) < 32 for c in v) or len(v) > 255:
            raise ValueError("correspondence name must be 1-255 printable characters")
        return v.strip()

    @property
    def is_fragment(self) -> bool:
        return self.subject is None
