"""A case's records: the case, its work parties, attachments and history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Party(BaseModel):
    """A work party of a case: a role filled by an operator or an address."""

    model_config = ConfigDict(frozen=True)

    role: str
    address: str
    name: str = ""
    operator_id: str | None = None
    language: str | None = None  # the language of the emails sent to this party


class HistoryEntry(BaseModel):
    """One line of a case's history."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    actor: str
    action: str
    detail: str


class AttachmentInfo(BaseModel):
    """A file attached to a case, without its content."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    content_type: str
    size: int
    created_at: datetime
    outbox_id: int | None = None


class Case(BaseModel):
    """A case with its parties, attachments and history."""

    model_config = ConfigDict(frozen=True)

    id: str
    case_type: str
    status: str
    created_by: str | None
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    parties: list[Party] = Field(default_factory=list)
    attachments: list[AttachmentInfo] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)

    def failed_emails(self, *, since: int = 0) -> list[str]:
        """Why emails of this case could not be queued, from history entry ``since`` on.

        A step whose email cannot be built (no work party for a role, say) does not undo
        the case change: it is recorded, and whoever made the change is told.
        """
        return [h.detail for h in self.history[since:] if h.action == "email-failed"]
