"""What a delivery report says: its kind, and per recipient what became of the email."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from postroom.outbox.models import RecipientState


class ReportKind(StrEnum):
    DSN = "dsn"  # RFC 3464 multipart/report; report-type=delivery-status
    ARF = "arf"  # RFC 5965 multipart/report; report-type=feedback-report
    HEURISTIC = "heuristic"  # a non-standard bounce read by its text
    NONE = "none"  # nothing in it reads as a report


class ReportOutcome(StrEnum):
    """What a report says happened to one recipient."""

    BOUNCED = "bounced"  # not delivered, and will not be
    DELAYED = "delayed"  # not delivered yet
    COMPLAINED = "complained"  # delivered, and reported as spam

    @property
    def state(self) -> RecipientState:
        """The recipient state it leads to on the outbox row."""
        return RecipientState(self.value)


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient a report speaks of.

    ``addresses`` are the forms the report names it by, the preferred first (RFC 3464's
    Original-Recipient, which is the ORCPT Postroom sent, then Final-Recipient); matching
    takes the first one that is a recipient of the email. ``soft``: a bounce whose cause
    may pass (4.x.x, a full mailbox); ``code`` the SMTP reply code in the diagnostic.
    """

    addresses: tuple[str, ...]
    outcome: ReportOutcome
    status: str | None = None
    diagnostic: str = ""
    remote_mta: str | None = None
    soft: bool = False
    code: int | None = None

    @property
    def address(self) -> str:
        return self.addresses[0]


@dataclass(frozen=True, slots=True)
class BounceReport:
    """A received delivery report as read: never trusted until matched to an email.

    ``tokens``: VERP tokens in the report's own recipient headers. ``message_id``: the
    returned message's Message-ID (without brackets). ``status`` and ``diagnostic``: what
    a non-standard report's text says when it names no recipient.
    """

    kind: ReportKind
    recipients: tuple[RecipientReport, ...] = ()
    envelope_id: str | None = None
    message_id: str | None = None
    tokens: tuple[str, ...] = ()
    status: str | None = None
    diagnostic: str = ""
    soft: bool = True
