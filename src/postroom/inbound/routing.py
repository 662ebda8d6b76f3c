"""Which case a received message belongs to: the rules, in order, first match wins.

0. A delivery report is a bounce, other automatic mail (and Postroom's own email come
   back) is automatic: neither reaches a case nor fires a step.
1. ``In-Reply-To`` or ``References`` names a Message-ID Postroom sent or received on a
   case: that case.
2. A case id in brackets in the subject (``[M-12]``).
3. A plus-address of the account (``mortgages+M-12@acme.example``), when the account
   sets ``reply_to_plus_addressing``.
   For 2 and 3 the sender must be a party of the case, unless its case type accepts
   mail from anyone: a guessed token sends a stranger's mail to triage, not to the case.
4. Mail to a case type's ``inbound.address`` with ``create_case``: a new case.
5. Otherwise: unmatched, waiting in triage.

The reason is recorded in words. Header values in it are data: quoted, cut short,
never rendered as templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from postroom.cases.models import CaseType
from postroom.cases.threads import case_id_of, subject_tokens, token
from postroom.db import tables
from postroom.inbound.models import InboundStatus
from postroom.inbound.parse import ParsedMail

# How much of a header value a reason quotes.
_QUOTED = 120
# Message-IDs looked up per message: In-Reply-To and the last References are enough.
_MAX_THREAD_IDS = 60


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes and why; ``new_case`` is the case type to open (rule 4)."""

    status: InboundStatus
    reason: str
    case_id: str | None = None
    new_case: CaseType | None = None


@dataclass(frozen=True, slots=True)
class AccountAddresses:
    """What routing needs of the mailbox's account: its addresses and plus addressing."""

    address: str
    reply_to: str | None
    plus_addressing: bool

    @classmethod
    def load(cls, conn: Connection, name: str) -> AccountAddresses | None:
        a = tables.accounts
        row = conn.execute(
            select(a.c.address, a.c.reply_to, a.c.reply_to_plus_addressing).where(a.c.name == name)
        ).first()
        if row is None:
            return None
        return cls(
            address=row.address,
            reply_to=row.reply_to,
            plus_addressing=bool(row.reply_to_plus_addressing),
        )


def quoted(value: str) -> str:
    """A header value fit for a reason: one line, cut short."""
    value = " ".join(value.split())
    return value if len(value) <= _QUOTED else value[: _QUOTED - 1] + "…"


def route(
    conn: Connection,
    mail: ParsedMail,
    *,
    account: AccountAddresses | None,
    types: Sequence[CaseType],
) -> Route:
    """Apply the rules to ``mail`` (see the module's description)."""
    if mail.bounce:
        return Route(InboundStatus.BOUNCE, "a delivery report (bounce): kept, not routed")
    if mail.automatic:
        return Route(
            InboundStatus.AUTOMATIC,
            f"automatic mail ({quoted(mail.automatic)}): kept, no case and no steps",
        )
    own = _own(conn, mail)
    if own is not None:
        return own
    for found in (
        _by_thread(conn, mail),
        _by_subject(conn, mail, types),
        _by_plus_address(conn, mail, account, types),
        _by_address(mail, types),
    ):
        if found is not None:
            return found
    return Route(InboundStatus.UNMATCHED, _unmatched_reason(mail, account))


def _own(conn: Connection, mail: ParsedMail) -> Route | None:
    """Postroom's own email come back (a copy to the mailbox it reads): never a reply."""
    if not mail.message_id:
        return None
    o = tables.outbox
    row = conn.execute(
        select(o.c.id).where(o.c.message_id.in_([f"<{mail.message_id}>", mail.message_id]))
    ).first()
    if row is None:
        return None
    return Route(
        InboundStatus.AUTOMATIC,
        f"Postroom's own email (outbox #{row.id}) came back: kept, no case and no steps",
    )


def _by_thread(conn: Connection, mail: ParsedMail) -> Route | None:
    named = [("In-Reply-To", i) for i in mail.in_reply_to]
    named += [("References", i) for i in reversed(mail.references)]  # the newest first
    seen: set[str] = set()
    wanted: list[tuple[str, str]] = []
    for header, mid in named:
        if mid and mid not in seen and len(wanted) < _MAX_THREAD_IDS:
            seen.add(mid)
            wanted.append((header, mid))
    if not wanted:
        return None
    ids = [mid for _, mid in wanted]
    o, m, c = tables.outbox, tables.inbound_messages, tables.cases
    # The outbox keeps Message-IDs as written in the header, with their angle brackets.
    bracketed = {f"<{mid}>": mid for mid in ids}
    sent = {
        bracketed.get(r.message_id, r.message_id): (r.id, r.case_id)
        for r in conn.execute(
            select(o.c.id, o.c.message_id, o.c.case_id)
            .join(c, c.c.id == o.c.case_id)
            .where(o.c.message_id.in_([*bracketed, *ids]))
        )
    }
    received = {
        r.message_id: (r.id, r.case_id)
        for r in conn.execute(
            select(m.c.id, m.c.message_id, m.c.case_id)
            .join(c, c.c.id == m.c.case_id)
            .where(m.c.message_id.in_(ids))
            .order_by(m.c.id)
        )
    }
    for header, mid in wanted:
        if mid in sent:
            outbox_id, case_id = sent[mid]
            return Route(
                InboundStatus.MATCHED,
                f"{header} <{quoted(mid)}> names outbox #{outbox_id} of case {case_id}",
                case_id=case_id,
            )
        if mid in received:
            message_id, case_id = received[mid]
            return Route(
                InboundStatus.MATCHED,
                f"{header} <{quoted(mid)}> names received message #{message_id} of case {case_id}",
                case_id=case_id,
            )
    return None


def case_type_of(conn: Connection, case_id: str) -> str | None:
    """The case type of case ``case_id``, or None when there is no such case."""
    c = tables.cases
    row = conn.execute(select(c.c.case_type).where(c.c.id == case_id)).first()
    return None if row is None else str(row.case_type)


def _admitted(
    conn: Connection,
    mail: ParsedMail,
    case_id: str,
    case_type: str,
    types: Sequence[CaseType],
    *,
    how: str,
) -> Route:
    """The case, if the sender is one of its parties or its case type accepts anyone."""
    ctype = next((t for t in types if t.class_name == case_type), None)
    if ctype is not None and ctype.inbound is not None and ctype.inbound.accept_from_anyone:
        return Route(
            InboundStatus.MATCHED,
            f"{how} (case type {ctype.class_name} accepts mail from anyone)",
            case_id=case_id,
        )
    sender = (mail.from_address or "").lower()
    p = tables.case_parties
    parties = {
        str(a).lower() for (a,) in conn.execute(select(p.c.address).where(p.c.case_id == case_id))
    }
    if sender and sender in parties:
        return Route(InboundStatus.MATCHED, f"{how} from a party of {case_id}", case_id=case_id)
    who = quoted(mail.from_address) if mail.from_address else "a sender without a valid address"
    return Route(InboundStatus.UNMATCHED, f"{how} from {who}, who is not a party of {case_id}")


def _by_subject(conn: Connection, mail: ParsedMail, types: Sequence[CaseType]) -> Route | None:
    prefixes = [t.id_prefix for t in types]
    for candidate in subject_tokens(mail.subject):
        case_id = case_id_of(candidate, prefixes)
        if case_id is None:
            continue
        case_type = case_type_of(conn, case_id)
        if case_type is not None:
            how = f"subject token {token(case_id)}"
            return _admitted(conn, mail, case_id, case_type, types, how=how)
    return None


def _by_plus_address(
    conn: Connection,
    mail: ParsedMail,
    account: AccountAddresses | None,
    types: Sequence[CaseType],
) -> Route | None:
    if account is None or not account.plus_addressing:
        return None
    own = {account.address.lower(), (account.reply_to or "").lower()} - {""}
    prefixes = [t.id_prefix for t in types]
    for recipient in mail.recipients:
        local, _, domain = recipient.lower().rpartition("@")
        base, plus, tag = local.rpartition("+")
        if not plus or f"{base}@{domain}" not in own:
            continue
        case_id = case_id_of(tag, prefixes)
        if case_id is None:
            continue
        case_type = case_type_of(conn, case_id)
        if case_type is not None:
            how = f"plus-address {quoted(recipient)}"
            return _admitted(conn, mail, case_id, case_type, types, how=how)
    return None


def _by_address(mail: ParsedMail, types: Sequence[CaseType]) -> Route | None:
    recipients = {r.lower() for r in mail.recipients}
    for ctype in types:
        inbound = ctype.inbound
        if inbound is None or not inbound.create_case or not inbound.address:
            continue
        if inbound.address.lower() not in recipients:
            continue
        label = ctype.label or ctype.class_name
        if inbound.sender_party and not mail.from_address:
            return Route(
                InboundStatus.UNMATCHED,
                f"mail to {inbound.address} would open a {label} case, but it has no valid "
                "sender address for the work party " + inbound.sender_party,
            )
        return Route(
            InboundStatus.NEW_CASE,
            f"new case: mail to {inbound.address} (case type {ctype.class_name})",
            new_case=ctype,
        )
    return None


def _unmatched_reason(mail: ParsedMail, account: AccountAddresses | None) -> str:
    missing = [
        "no Message-ID of Postroom's in In-Reply-To or References"
        if (mail.in_reply_to or mail.references)
        else "no In-Reply-To or References",
        "no case id in the subject",
    ]
    if account is not None and account.plus_addressing:
        missing.append("no plus-address with a case id")
    missing.append("not sent to an address that opens cases")
    return "no case found: " + ", ".join(missing)
