"""Suppression entries: an address Postroom does not send to, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

EVERYWHERE = "*"  # the scope of an entry that holds for every account


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # a permanent failure (5.x.x) reported after sending
    SOFT_BOUNCES = "soft_bounces"  # soft bounces past the limit within the window
    COMPLAINT = "complaint"  # the recipient reported an email as spam (ARF)
    MANUAL = "manual"  # added by an admin

    @property
    def lifted_by_mail(self) -> bool:
        """Whether mail later received from the address lifts it (bounces only)."""
        return self in (SuppressionReason.HARD_BOUNCE, SuppressionReason.SOFT_BOUNCES)


@dataclass(frozen=True, slots=True)
class Suppression:
    """One suppressed address in one scope (an account's name, or ``*``)."""

    id: int
    address: str
    scope: str
    reason: SuppressionReason
    detail: str
    created_at: datetime
    outbox_id: int | None = None
    inbound_id: int | None = None
    created_by: str | None = None

    @property
    def everywhere(self) -> bool:
        return self.scope == EVERYWHERE

    def describe(self) -> str:
        """Why, in words: what a suppressed recipient's text says."""
        when = f"{self.created_at:%Y-%m-%d}"
        where = "" if self.everywhere else f" for account {self.scope}"
        text = f"suppressed{where} since {when}: {self.reason.value.replace('_', ' ')}"
        return f"{text} ({self.detail})" if self.detail else text
