"""Review states and the transitions allowed between them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from postroom.errors import StateError


class ReviewState(StrEnum):
    """Where a review stands: waiting, or decided (approved, rejected) or expired."""

    PENDING = "pending"  # its emails wait as awaiting_review
    APPROVED = "approved"  # its emails were queued (with the reviewer's text, if edited)
    REJECTED = "rejected"  # its emails ended rejected; nothing was sent
    EXPIRED = "expired"  # its emails' expires_at came first; nothing was sent


TRANSITIONS: dict[ReviewState, frozenset[ReviewState]] = {
    ReviewState.PENDING: frozenset(
        {ReviewState.APPROVED, ReviewState.REJECTED, ReviewState.EXPIRED}
    ),
    ReviewState.APPROVED: frozenset(),
    ReviewState.REJECTED: frozenset(),
    ReviewState.EXPIRED: frozenset(),
}


def check_transition(current: ReviewState, new: ReviewState, *, what: str) -> None:
    """Raise :class:`StateError` unless the table allows ``current`` → ``new``."""
    if new not in TRANSITIONS[current]:
        raise StateError(f"{what} is {current} already; it can no longer be {new}")


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who reviews an email: as the step names them, and who that was for the case."""

    kind: str  # "operator" or "party"
    value: str  # the operator id or the party role
    operator: str | None = None  # the operator it resolved to, if any
    address: str | None = None  # their address, if known

    def describe(self) -> str:
        """``operator carol`` or ``CaseManager (operator carol)`` / ``CaseManager <a@b>``."""
        if self.kind == "operator":
            return f"operator {self.value}"
        if self.operator:
            return f"{self.value} (operator {self.operator})"
        return f"{self.value} <{self.address}>" if self.address else self.value


@dataclass(frozen=True, slots=True)
class Text:
    """An email's text as a reviewer sees and edits it."""

    subject: str
    html: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"subject": self.subject, "html": self.html, "text": self.text}

    @classmethod
    def from_json(cls, data: Any) -> Text:
        return cls(str(data["subject"]), str(data["html"]), str(data["text"]))


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """A review as stored: the email's text as composed, the edit and the decision."""

    id: int
    case_id: str | None
    step: str
    reviewer: Reviewer
    state: ReviewState
    requested_at: datetime
    escalate_at: datetime | None  # cleared once escalated: the sweep reads only what is due
    escalated_at: datetime | None
    escalated_to: str | None  # the manager told; None when nobody could be (or not yet)
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    original: Text
    edited: Text | None
    outbox_ids: tuple[int, ...]

    @property
    def sent_text(self) -> Text:
        """The text that is (or would be) sent: the edit if there is one."""
        return self.edited or self.original

    def overdue(self, now: datetime) -> bool:
        """Still pending past its escalation time (escalated or not)."""
        if self.state is not ReviewState.PENDING:
            return False
        return self.escalated_at is not None or (
            self.escalate_at is not None and self.escalate_at <= now
        )
