"""Applying a delivery report, in the transaction that ingests it.

A matched report changes the email's recipients (only as ``report_may_change``
allows: a final word is never taken back, so a report read twice changes nothing
twice), keeps one ``delivery_reports`` row per change, writes a history line on the
email's case, suppresses the address after a hard bounce, a complaint, or too many soft
bounces, emits one event per change, and fires the case type's ``on: bounced`` steps
once per report that bounced someone. The outbox row's status stays as it is: the
email was sent; some of it came back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, insert, update

from postroom.bounces.matching import Match, Named, find_email, named
from postroom.bounces.models import BounceReport, RecipientReport, ReportOutcome
from postroom.cases import store as case_store
from postroom.cases.models import CaseType
from postroom.cases.service import CaseService
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.inbound.routing import case_type_of, quoted
from postroom.outbox.models import Recipient, RecipientState, report_may_change
from postroom.settings import Settings
from postroom.suppression import SuppressionReason, SuppressionStore, scope_of
from postroom.webhooks.events import emit
from postroom.webhooks.models import Event, EventType
from postroom.webhooks.payloads import email_data, recipient_data

NOTHING_SENT = "a delivery report naming nothing Postroom sent"
_EVENTS = {
    RecipientState.BOUNCED: EventType.EMAIL_BOUNCED,
    RecipientState.DELAYED: EventType.EMAIL_DELAYED,
    RecipientState.COMPLAINED: EventType.EMAIL_COMPLAINED,
}
_ACTIONS = {
    RecipientState.BOUNCED: "email-bounced",
    RecipientState.DELAYED: "email-delayed",
    RecipientState.COMPLAINED: "email-complained",
}


@dataclass(frozen=True, slots=True)
class BouncePolicy:
    """Where automatic suppressions hold, and how many soft bounces in how long suppress."""

    everywhere: bool = False
    soft_limit: int = 3
    soft_days: float = 7.0

    @classmethod
    def of(cls, settings: Settings) -> BouncePolicy:
        return cls(
            everywhere=settings.suppression_scope == "everywhere",
            soft_limit=settings.soft_bounce_limit,
            soft_days=settings.soft_bounce_days,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """What a report did: the received row's reason and case, and emails to send now."""

    reason: str
    case_id: str | None
    immediate: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Change:
    before: Recipient
    after: Recipient
    said: RecipientReport
    suppressed: bool = False


class ReportProcessor:
    """Applies matched delivery reports to their emails, cases and the suppression list."""

    def __init__(
        self,
        cases: CaseService,
        *,
        policy: BouncePolicy,
        suppressions: SuppressionStore | None = None,
    ) -> None:
        self._cases = cases
        self._policy = policy
        self._suppressions = suppressions or SuppressionStore()

    def apply(
        self,
        conn: Connection,
        report: BounceReport,
        *,
        inbound_id: int,
        types: Sequence[CaseType],
    ) -> Applied:
        """Apply ``report`` (received as message #``inbound_id``); returns what it did."""
        match = find_email(conn, report)
        if match is None:
            return Applied(f"{NOTHING_SENT}{_naming(report)}: kept, changes nothing", None)
        email = match.email
        where = f"delivery report for outbox #{email.id} (by {match.how})"
        pairs, strangers = named(match, report)
        if not pairs:
            if strangers:  # someone else's address: not this email's business
                shown = ", ".join(quoted(a) for a in strangers[:5])
                return Applied(f"{where} names no recipient of it ({shown}): changes nothing", None)
            return Applied(f"{where} names no recipient: changes nothing", email.case_id)
        now = utcnow()
        changes, unchanged = _changes(pairs)
        if changes:
            self._record(conn, match, changes, inbound_id=inbound_id, now=now)
            changes = [self._suppress(conn, match, c, inbound_id=inbound_id) for c in changes]
            emit(conn, [_event(match, c, inbound_id) for c in changes], now=now)
        immediate: list[int] = []
        bounced = any(c.after.state is RecipientState.BOUNCED for c in changes)
        if bounced and email.case_id is not None:
            immediate = self._fire(conn, email.case_id, types)
        said = [_words(c) for c in changes] + unchanged
        return Applied(f"{where}: {'; '.join(said)}", email.case_id, tuple(immediate))

    def _record(
        self,
        conn: Connection,
        match: Match,
        changes: list[_Change],
        *,
        inbound_id: int,
        now: datetime,
    ) -> None:
        email = match.email
        after = {c.before.address.lower(): c.after for c in changes}
        recipients = [after.get(r.address.lower(), r).to_json() for r in email.recipients]
        o = tables.outbox
        conn.execute(
            update(o).where(o.c.id == email.id).values(recipients=recipients, updated_at=now)
        )
        conn.execute(
            insert(tables.delivery_reports),
            [
                {
                    "inbound_id": inbound_id,
                    "outbox_id": email.id,
                    "address": c.after.address.strip().lower(),
                    "kind": str(c.after.state),
                    "soft": c.said.soft and c.said.outcome is not ReportOutcome.COMPLAINED,
                    "status": c.said.status,
                    "diagnostic": c.said.diagnostic,
                    "at": now,
                }
                for c in changes
            ],
        )
        if email.case_id is None:
            return
        for c in changes:
            detail = f"outbox #{email.id} to {c.after.address}: {_words(c, history=True)}"
            case_store.add_history(
                conn,
                email.case_id,
                actor=case_store.SYSTEM,
                action=_ACTIONS[c.after.state],
                detail=f"{detail} (received message #{inbound_id})",
            )

    def _suppress(
        self, conn: Connection, match: Match, change: _Change, *, inbound_id: int
    ) -> _Change:
        """Suppress the address when the change calls for it; says whether it was added."""
        state, said = change.after.state, change.said
        address = change.after.address
        reason: SuppressionReason | None = None
        detail = _cause(said)
        if state is RecipientState.COMPLAINED:
            reason = SuppressionReason.COMPLAINT
        elif state is RecipientState.BOUNCED and not said.soft:
            reason = SuppressionReason.HARD_BOUNCE
        elif state is RecipientState.BOUNCED:
            days = self._policy.soft_days
            count = self._suppressions.soft_bounces(conn, address, days=days)
            if count >= self._policy.soft_limit:
                reason = SuppressionReason.SOFT_BOUNCES
                detail = f"{count} soft bounces within {days:g} days, the last: {detail}"
        if reason is None:
            return change
        _, new = self._suppressions.suppress(
            conn,
            address,
            scope=scope_of(match.email.account, everywhere=self._policy.everywhere),
            reason=reason,
            detail=quoted(detail),
            outbox_id=match.email.id,
            inbound_id=inbound_id,
        )
        return replace(change, suppressed=new)

    def _fire(self, conn: Connection, case_id: str, types: Sequence[CaseType]) -> list[int]:
        class_name = case_type_of(conn, case_id)
        ctype = next((t for t in types if t.class_name == class_name), None)
        if ctype is None:
            return []
        return self._cases.steps.fire(conn, ctype, case_id, event="bounced")


def _changes(pairs: list[Named]) -> tuple[list[_Change], list[str]]:
    """The recipients the report may change, and words for those it may not."""
    changes: list[_Change] = []
    unchanged: list[str] = []
    for pair in pairs:
        before, said = pair.recipient, pair.report
        state = said.outcome.state
        if not report_may_change(before.state, state):
            unchanged.append(f"{before.address} {state} ignored, it is {before.state}")
            continue
        after = Recipient(
            before.address, state, code=said.code, text=said.diagnostic, enhanced=said.status
        )
        changes.append(_Change(before, after, said))
    return changes, unchanged


def _cause(said: RecipientReport) -> str:
    """The status and the diagnostic as one short text (the status once)."""
    if said.status and said.status not in said.diagnostic[:24]:
        return f"{said.status} {said.diagnostic}".strip()
    return said.diagnostic


def _words(change: _Change, *, history: bool = False) -> str:
    """``a@x bounced (5.1.1 ...), suppressed``; for the history line, without the address
    (it names it first) and before suppression is decided."""
    said = change.said
    soft = " (soft)" if said.soft and change.after.state is RecipientState.BOUNCED else ""
    text = f"{change.after.state}{soft} ({quoted(_cause(said))})"
    if history:
        return text
    return f"{change.after.address} {text}" + (", suppressed" if change.suppressed else "")


def _naming(report: BounceReport) -> str:
    if not report.recipients:
        return ""
    shown = ", ".join(f"{quoted(r.address)} {r.outcome}" for r in report.recipients[:5])
    more = f" and {len(report.recipients) - 5} more" if len(report.recipients) > 5 else ""
    return f" ({shown}{more})"


def _event(match: Match, change: _Change, inbound_id: int) -> Event:
    email = match.email
    data = email_data(
        email_id=email.id,
        message_id=email.message_id,
        case_id=email.case_id,
        account=email.account,
        subject=email.subject,
        status=email.status,
    )
    data["recipient"] = recipient_data(change.after)
    data["report_id"] = inbound_id
    return Event(_EVENTS[change.after.state], data)
