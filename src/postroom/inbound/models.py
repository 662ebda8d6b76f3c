"""What inbound mail is, as the listener fetches it and as Postroom keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from postroom.errors import StateError


class InboundStatus(StrEnum):
    """Where a received message went (its routing), and what an admin did with it since."""

    MATCHED = "matched"  # threaded onto an existing case
    NEW_CASE = "new_case"  # opened a case (a case type's inbound: create_case)
    UNMATCHED = "unmatched"  # waits in the triage list
    AUTOMATIC = "automatic"  # an auto-reply or list mail: kept, routed nowhere
    BOUNCE = "bounce"  # a delivery report: kept for bounce processing, not a reply
    TOO_LARGE = "too_large"  # over the size limit: recorded, left on the server
    DISMISSED = "dismissed"  # taken off the triage list by an admin


# What an admin may do to a received message: attach it to a case, open a case from it,
# or dismiss it. Routing writes the first status; only these changes follow.
TRANSITIONS: dict[InboundStatus, frozenset[InboundStatus]] = {
    InboundStatus.UNMATCHED: frozenset(
        {InboundStatus.MATCHED, InboundStatus.NEW_CASE, InboundStatus.DISMISSED}
    ),
    InboundStatus.AUTOMATIC: frozenset({InboundStatus.MATCHED, InboundStatus.DISMISSED}),
    InboundStatus.DISMISSED: frozenset({InboundStatus.MATCHED, InboundStatus.NEW_CASE}),
    InboundStatus.MATCHED: frozenset(),
    InboundStatus.NEW_CASE: frozenset(),
    InboundStatus.BOUNCE: frozenset(),
    InboundStatus.TOO_LARGE: frozenset(),
}


def check_transition(
    current: InboundStatus,
    new: InboundStatus,
    *,
    message_id: int,
    case_id: str | None = None,
) -> None:
    """Refuse a change the table does not allow, saying what the message is and why."""
    if new in TRANSITIONS[current]:
        return
    what = f"received message #{message_id}"
    if current in (InboundStatus.MATCHED, InboundStatus.NEW_CASE):
        where = f"case {case_id}" if case_id else "a case"
        raise StateError(f"{what} is already on {where}: it stays there")
    if current is InboundStatus.BOUNCE:
        raise StateError(f"{what} is a delivery report: it stays as it is")
    if current is InboundStatus.TOO_LARGE:
        raise StateError(f"{what} was too large to read: it stays on the server")
    if current is new:
        raise StateError(f"{what} is already {_WORDS[current]}")
    if current is InboundStatus.AUTOMATIC and new is InboundStatus.NEW_CASE:
        raise StateError(
            f"{what} is automatic mail (an auto-reply or list mail): it cannot open a case; "
            "attach it to a case or dismiss it"
        )
    raise StateError(f"{what} is {_WORDS[current]}: it cannot become {_WORDS[new]}")


_WORDS = {
    InboundStatus.MATCHED: "on a case",
    InboundStatus.NEW_CASE: "a new case",
    InboundStatus.UNMATCHED: "unmatched",
    InboundStatus.AUTOMATIC: "automatic mail",
    InboundStatus.BOUNCE: "a delivery report",
    InboundStatus.TOO_LARGE: "too large",
    InboundStatus.DISMISSED: "dismissed",
}


class ServerState(StrEnum):
    """What is still to be done to the message on the mail server."""

    PENDING = "pending"  # committed here; to be flagged, moved or deleted there
    DONE = "done"
    LEFT = "left"  # deliberately left as it is (too large to read)


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a mailbox has been read.

    IMAP: ``validity`` is the folder's UIDVALIDITY and ``position`` the last UID read.
    Graph: no validity; ``position`` is the delta (or next-page) link.
    """

    validity: str | None = None
    position: str | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as a source hands it over; ``raw`` is None when it is too large.

    ``key`` identifies it on the server (an IMAP UID, a Graph message id), for the
    flag, move or delete after ingest. ``cursor`` is how far the mailbox has been read
    once this message is in: saved in the ingest's own transaction.
    """

    key: str
    size: int
    raw: bytes | None
    cursor: Cursor | None = None


@dataclass(frozen=True, slots=True)
class MailboxRef:
    """One mailbox a listener reads: an account's folder."""

    account: str
    folder: str

    @property
    def key(self) -> str:
        return f"{self.account}/{self.folder}"


class ReceivedMessage(BaseModel):
    """A received message as listed and shown: never its raw bytes."""

    model_config = ConfigDict(frozen=True)

    id: int
    account: str
    folder: str
    message_id: str | None
    in_reply_to: str | None = None
    subject: str
    from_address: str | None
    from_name: str = ""
    to: list[str] = Field(default_factory=list)
    sent_at: datetime | None = None
    received_at: datetime
    size: int
    status: InboundStatus
    reason: str
    case_id: str | None = None
    text: str = Field("", description="The reply's own text, quoted history folded away")
    defects: list[str] = Field(default_factory=list)
    server_state: ServerState
    attachments: int = 0
