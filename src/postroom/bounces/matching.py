"""Which email a report speaks of, and which of its recipients it may change.

The email is found by what only its sender knows: a VERP token in the address the
report came to, the ENVID Postroom gave the server (the same token), or the returned
message's Message-ID. A report may then change only recipients of that email: a forged
report naming someone else's address, or naming an address on a real email without
its token or Message-ID, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from postroom.bounces.models import BounceReport, RecipientReport, ReportKind, ReportOutcome
from postroom.db import tables
from postroom.outbox.models import Recipient

_O = tables.outbox
_COLUMNS = (
    _O.c.id,
    _O.c.message_id,
    _O.c.case_id,
    _O.c.account,
    _O.c.subject,
    _O.c.status,
    _O.c.recipients,
)


@dataclass(frozen=True, slots=True)
class SentEmail:
    """The outbox row a report speaks of, as read (and locked) for the change."""

    id: int
    message_id: str
    case_id: str | None
    account: str | None
    subject: str
    status: str
    recipients: tuple[Recipient, ...]

    @classmethod
    def of(cls, row: Any) -> SentEmail:
        return cls(
            id=row.id,
            message_id=row.message_id,
            case_id=row.case_id,
            account=row.account,
            subject=row.subject,
            status=row.status,
            recipients=tuple(Recipient.from_json(r) for r in row.recipients),
        )


@dataclass(frozen=True, slots=True)
class Match:
    """The email found, and by what (words for the reason)."""

    email: SentEmail
    how: str
    by_token: bool


@dataclass(frozen=True, slots=True)
class Named:
    """What a report says of one recipient of the email."""

    recipient: Recipient  # as it is on the row now
    report: RecipientReport


def find_email(conn: Connection, report: BounceReport) -> Match | None:
    """The outbox row by VERP token, else by ENVID, else by Message-ID; locked for update."""
    if report.tokens:
        rows = {
            r.bounce_token: r
            for r in conn.execute(
                select(*_COLUMNS, _O.c.bounce_token)
                .where(_O.c.bounce_token.in_(list(report.tokens)))
                .with_for_update()
            )
        }
        for token in report.tokens:
            if token in rows:
                return Match(SentEmail.of(rows[token]), "its VERP address", by_token=True)
    envid = (report.envelope_id or "").strip().lower()
    if envid:
        row = conn.execute(
            select(*_COLUMNS).where(_O.c.bounce_token == envid).with_for_update()
        ).first()
        if row is not None:
            return Match(SentEmail.of(row), "its ENVID", by_token=True)
    if report.message_id:
        mid = report.message_id
        row = conn.execute(
            select(*_COLUMNS).where(_O.c.message_id.in_([f"<{mid}>", mid])).with_for_update()
        ).first()
        if row is not None:
            return Match(SentEmail.of(row), "its Message-ID", by_token=False)
    return None


def named(match: Match, report: BounceReport) -> tuple[list[Named], list[str]]:
    """The email's recipients the report speaks of, and the addresses it names that are
    not the email's (ignored). A non-standard report naming nobody counts for the only
    recipient of a one-recipient email, and only when it came to that email's token."""
    on_row = {r.address.strip().lower(): r for r in match.email.recipients}
    found: dict[str, Named] = {}
    strangers: list[str] = []
    for said in report.recipients:
        keys = [a.strip().lower() for a in said.addresses]
        key = next((k for k in keys if k in on_row), None)
        if key is None:
            strangers.append(said.address)
        elif key not in found:
            found[key] = Named(on_row[key], said)
    if not report.recipients and _for_the_only_one(match, report):
        (only,) = match.email.recipients
        said = RecipientReport(
            addresses=(only.address,),
            outcome=ReportOutcome.BOUNCED,
            status=report.status,
            diagnostic=report.diagnostic or "a delivery report that names no address",
            soft=report.soft,
        )
        found[only.address.lower()] = Named(only, said)
    return list(found.values()), strangers


def _for_the_only_one(match: Match, report: BounceReport) -> bool:
    return (
        report.kind in (ReportKind.HEURISTIC, ReportKind.NONE)
        and match.by_token
        and len(match.email.recipients) == 1
    )
