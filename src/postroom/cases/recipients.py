"""A request's recipients as mailboxes, each with the language it asks for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from postroom.cases.adhoc import at_field
from postroom.cases.models import Case, Recipient, RecipientKind
from postroom.correspondence import Mailbox
from postroom.errors import MessageError
from postroom.operators import OperatorStore
from postroom.validation import check_address


@dataclass(frozen=True, slots=True)
class Addressee:
    """A recipient's mailbox, the language its emails are asked in, and whose it is."""

    box: Mailbox
    language: str | None = None
    whose: str = "the recipient's"  # "Customer's", "operator carol's"
    role: str | None = None  # the work party's role, when it is one


def addressees(
    conn: Connection,
    operators: OperatorStore,
    recipients: Sequence[Recipient],
    *,
    case: Case | None,
    received_from: Mailbox | None,
    field: str,
    active: bool,
) -> list[Addressee]:
    """Each recipient as an :class:`Addressee`; errors name ``field.N`` when ``active``."""
    found = []
    for index, r in enumerate(recipients):
        with at_field(f"{field}.{index}", active=active):
            found.append(_addressee(conn, operators, r, case, received_from))
    return found


def _addressee(
    conn: Connection,
    operators: OperatorStore,
    r: Recipient,
    case: Case | None,
    received_from: Mailbox | None,
) -> Addressee:
    if r.kind is RecipientKind.ADDRESS:
        # The normalised form: the envelope must not get the raw value (with, say,
        # a trailing U+2028 that the validator stripped).
        try:
            return Addressee(Mailbox(check_address(r.value, what="recipient address")))
        except ValueError as exc:
            raise MessageError(str(exc)) from None
    if r.kind is RecipientKind.OPERATOR:
        operator = operators.get(conn, r.value)
        if not operator.email:
            raise MessageError(f"operator {operator.id} has no email address")
        return Addressee(
            Mailbox(operator.email, operator.name), operator.language, f"operator {operator.id}'s"
        )
    if r.kind is RecipientKind.SENDER:
        if received_from is None:
            raise MessageError("{sender: true} needs a received email with a sender address")
        return Addressee(received_from, None, "the sender's")
    if case is None:
        raise MessageError(f"a {r.kind} recipient needs a case")
    if r.kind is RecipientKind.PARTY:
        party = next((p for p in case.parties if p.role == r.value), None)
        if party is None:
            raise MessageError(f"case {case.id} has no {r.value} work party")
        return Addressee(
            Mailbox(party.address, party.name), party.language, f"{party.role}'s", party.role
        )
    value = case.data.get(r.value)
    if not isinstance(value, str) or not value:
        raise MessageError(f"case {case.id} has no address in field {r.value!r}")
    try:
        return Addressee(Mailbox(check_address(value, what=f"field {r.value}")))
    except ValueError as exc:
        raise MessageError(str(exc)) from None


class Timed(Protocol):
    """A request's scheduled send and expiry."""

    @property
    def send_after(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def check_timing(request: Timed, now: datetime, *, name_fields: bool) -> None:
    """Times need a zone; an expiry must be ahead and after the scheduled send."""
    for name in ("send_after", "expires_at"):
        value = getattr(request, name)
        with at_field(name, active=name_fields):
            if value is not None and value.tzinfo is None:
                raise MessageError(f"{name} needs a time zone (e.g. 2026-12-01T09:00:00+01:00)")
    if request.expires_at is None:
        return
    with at_field("expires_at", active=name_fields):
        if request.expires_at <= now:
            raise MessageError(f"expires_at {request.expires_at.isoformat()} has already passed")
    with at_field("send_after", active=name_fields):
        if request.send_after is not None and request.send_after >= request.expires_at:
            raise MessageError("send_after must come before expires_at: it would never be sent")
