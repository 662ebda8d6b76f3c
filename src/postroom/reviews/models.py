"""Review states and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum

from postroom.errors import StateError


class ReviewState(StrEnum):
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
