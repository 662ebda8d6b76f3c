"""What refuses a delete: the records and emails that still name a record.

Each check answers with the first user found, as a sentence ending the refusal
("... is still used by case type A-B-C"), or None when nothing refers to the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import Environment, TemplateSyntaxError, meta
from sqlalchemy import Connection, select

from postroom.cases.models import CaseType, RecipientKind
from postroom.db import tables
from postroom.outbox import OutboxStatus

if TYPE_CHECKING:
    from postroom.app import Postroom

# Emails an account still has to send: deleting it would strand them.
WAITING = tuple(
    s.value
    for s in (
        OutboxStatus.QUEUED,
        OutboxStatus.SENDING,
        OutboxStatus.RETRY,
        OutboxStatus.HELD,
        OutboxStatus.AWAITING_REVIEW,
    )
)


def account_in_use(_: Postroom, conn: Connection, name: str) -> str | None:
    o = tables.outbox
    query = select(o.c.id).where(o.c.account == name, o.c.status.in_(WAITING)).limit(1)
    row = conn.execute(query).first()
    if row is None:
        return None
    return (
        f"account {name} still has emails waiting to be sent (outbox #{row.id}); "
        "cancel or send them first"
    )


def profile_in_use(_: Postroom, conn: Connection, name: str) -> str | None:
    a = tables.accounts
    row = conn.execute(select(a.c.name).where(a.c.auth_profile == name).limit(1)).first()
    return None if row is None else f"auth profile {name} is still used by account {row.name}"


def keystore_in_use(pr: Postroom, conn: Connection, name: str) -> str | None:
    # Signing settings are JSON: compared here rather than in SQL.
    for account in pr.account_store.list(conn):
        if account.signing is not None and account.signing.keystore == name:
            return f"keystore {name} is still used by account {account.name} (signing)"
    return None


def _names_operator(case_type: CaseType, operator_id: str) -> bool:
    if f"operator:{operator_id}" in case_type.parties.values():
        return True
    return any(
        r.kind is RecipientKind.OPERATOR and r.value == operator_id
        for step in case_type.steps
        for r in (*step.to, *step.cc, *step.bcc)
    )


def operator_in_use(pr: Postroom, conn: Connection, operator_id: str) -> str | None:
    for case_type in pr.case_type_store.list(conn):
        if _names_operator(case_type, operator_id):
            return f"operator {operator_id} is still used by case type {case_type.class_name}"
    o = tables.operators
    row = conn.execute(select(o.c.id).where(o.c.reports_to == operator_id).limit(1)).first()
    if row is not None:
        return f"operator {operator_id} is still used by operator {row.id} (reports to)"
    return None


def _includes(source: str | None) -> set[str]:
    """The correspondence a template includes (none when it does not parse)."""
    if not source:
        return set()
    try:
        tree = Environment(autoescape=True).parse(source)
    except TemplateSyntaxError:
        return set()
    return {n for n in meta.find_referenced_templates(tree) if n is not None}


def correspondence_in_use(pr: Postroom, conn: Connection, name: str) -> str | None:
    for case_type in pr.case_type_store.list(conn):
        for step in case_type.steps:
            if step.correspondence == name or name in _includes(step.body):
                return f"correspondence {name!r} is still used by case type {case_type.class_name}"
    for other in pr.correspondence_store.all(conn).values():
        parts = (other.subject, other.html, other.text)
        if other.name != name and any(name in _includes(p) for p in parts):
            return f"correspondence {name!r} is still used by correspondence {other.name!r}"
    return None


def case_type_in_use(_: Postroom, conn: Connection, class_name: str) -> str | None:
    c = tables.cases
    row = conn.execute(select(c.c.id).where(c.c.case_type == class_name).limit(1)).first()
    return None if row is None else f"case type {class_name} is still used by case {row.id}"
