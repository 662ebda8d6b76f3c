"""Records and helpers for the ingest tests: a mortgage case type that sends and takes
mail, a claims type that opens cases from mail, and ingest of raw bytes."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from postroom import Postroom
from postroom.inbound.ingest import IngestResult
from postroom.inbound.models import FetchedMessage, MailboxRef

MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"
CLAIM = "MyOrg-Claims-Work-Claim"
ACCOUNT = "MyOrg-Mortgage-Work"
ADDRESS = "mortgages@acme.example"
CUSTOMER = "jane@customer.example"
SENDER = f"Jane Customer <{CUSTOMER}>"
MAILBOX = MailboxRef(ACCOUNT, "INBOX")
CREATED_STEP = {
    "name": "Welcome",
    "on": "created",
    "to": [{"party": "Customer"}],
    "subject": "Your mortgage request",
    "body": "<p>Dear customer, we have your request.</p>",
}


def records(
    *,
    steps: list[dict[str, Any]] | None = None,
    claim_steps: list[dict[str, Any]] | None = None,
    plus: bool = False,
    subject_token: bool = False,
    accept_from_anyone: bool = False,
    claim_fields: list[dict[str, Any]] | None = None,
    port: int = 25,
) -> dict[str, Any]:
    mortgage: dict[str, Any] = {
        "class": MORTGAGE,
        "class_group": ACCOUNT,
        "label": "Mortgage Request",
        "id_prefix": "M-",
        "parties": {"Customer": "data.customer_email", "CaseManager": "operator:carol"},
        "steps": [CREATED_STEP, *(steps or [])],
        "subject_token": subject_token,
    }
    if accept_from_anyone:
        mortgage["inbound"] = {"accept_from_anyone": True}
    claim: dict[str, Any] = {
        "class": CLAIM,
        "class_group": "MyOrg-Claims-Work",
        "label": "Claim",
        "id_prefix": "CL-",
        "parties": {"Handler": "operator:carol"},
        "steps": claim_steps or [],
        "inbound": {
            "create_case": True,
            "address": "claims@acme.example",
            "sender_party": "Claimant",
            "data": {"subject": "title", "text": "description", "from_name": "claimant_name"},
        },
    }
    if claim_fields is not None:
        claim["fields"] = claim_fields
    return {
        "operators": [{"id": "carol", "name": "Carol", "email": "carol@acme.example"}],
        "accounts": [
            {
                "name": name,
                "address": address,
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "reply_to_plus_addressing": plus,
            }
            for name, address in ((ACCOUNT, ADDRESS), ("Default", "postroom@acme.example"))
        ],
        "case_types": [mortgage, claim],
    }


def ingest(
    pr: Postroom,
    raw: bytes,
    *,
    key: str = "1",
    validity: str | None = "7",
    mailbox: MailboxRef = MAILBOX,
) -> IngestResult:
    return pr.ingestor.ingest(
        mailbox, FetchedMessage(key=key, size=len(raw), raw=raw), validity=validity
    )


def new_case(pr: Postroom, customer: str = CUSTOMER) -> tuple[str, str]:
    """A mortgage case whose welcome email is queued: (case id, its Message-ID without <>)."""
    case = pr.cases.create(MORTGAGE, data={"customer_email": customer})
    [entry] = pr.outbox(case_id=case.id)
    return case.id, entry.message_id.strip("<>")


def queued(pr: Postroom, case_id: str) -> list[tuple[int, EmailMessage]]:
    """The case's outbox rows, oldest first, each with its parsed message."""
    rows = []
    for entry in reversed(pr.outbox(case_id=case_id)):
        with pr.engine.connect() as conn:
            raw = pr.outbox_store.message_bytes(conn, entry.id)
        assert raw is not None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        rows.append((entry.id, message))
    return rows


def history(pr: Postroom, case_id: str, action: str) -> list[str]:
    return [h.detail for h in pr.cases.get(case_id).history if h.action == action]
