"""Outbox statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum

from postroom.errors import StateError


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by an agent under a lease
    SENT = "sent"
    RETRY = "retry"  # waiting for next_attempt_at after a transient failure
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Waits for something other than time: its account's credentials to work again
    # (released automatically) or a person (an outcome nobody knows, a suspected mail
    # loop). Never claimed.
    HELD = "held"
    # Its expires_at came before it could be delivered: never sent late. Final.
    EXPIRED = "expired"
    # Composed by a step with a reviewer: waits for approval (then queued) or rejection.
    # Never claimed.
    AWAITING_REVIEW = "awaiting_review"
    # Its reviewer refused it, with a reason. Final: nothing was sent.
    REJECTED = "rejected"


class Priority(StrEnum):
    """Which due emails an agent claims first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Stored in the row: claims order by it, ascending."""
        return _RANKS[self]

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        return next(p for p, r in _RANKS.items() if r == rank)


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


class Hold(StrEnum):
    """Why a held email waits."""

    ACCOUNT = "account"  # its account's credentials were refused; released when they work
    OUTCOME = "outcome"  # sent with no answer; a person decides (retry or cancel)
    # A step's answer to received mail past the per-address hourly limit (a mail loop,
    # perhaps): a person releases it with retry, or cancels it.
    LOOP = "loop"


S = OutboxStatus

TRANSITIONS: dict[OutboxStatus, frozenset[OutboxStatus]] = {
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.EXPIRED}),
    # SENDING -> SENDING: another agent re-claims a row whose lease expired.
    S.SENDING: frozenset({S.SENT, S.RETRY, S.FAILED, S.SENDING, S.QUEUED, S.HELD, S.EXPIRED}),
    S.RETRY: frozenset({S.SENDING, S.QUEUED, S.CANCELLED, S.EXPIRED}),
    S.HELD: frozenset({S.QUEUED, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_REVIEW: frozenset({S.QUEUED, S.REJECTED, S.EXPIRED}),
    S.FAILED: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.SENT: frozenset(),
    S.EXPIRED: frozenset(),
    S.REJECTED: frozenset(),
}

DUE = (S.QUEUED, S.RETRY)
"""Statuses an agent may claim once ``next_attempt_at`` has come."""


def check_transition(current: OutboxStatus, new: OutboxStatus, *, what: str) -> None:
    """Raise :class:`StateError` unless the table allows ``current`` → ``new``."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise StateError(f"{what} is {current}; from {current} it can go to {allowed}, not {new}")


def sources_of(new: OutboxStatus) -> tuple[OutboxStatus, ...]:
    """Every status from which ``new`` may be reached (for guarded UPDATEs)."""
    return tuple(s for s, targets in TRANSITIONS.items() if new in targets)
