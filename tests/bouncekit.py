"""A mortgage case type whose emails go to two recipients through a real SMTP sink, with a
VERP bounce address, and helpers to read back what delivery reports changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from postroom import Postroom
from postroom.db import tables
from postroom.inbound.ingest import IngestResult
from postroom.outbox.models import Recipient
from postroom.suppression import Suppression
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import EventType
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.ingestkit import ACCOUNT, ADDRESS, MORTGAGE, ingest

BOUNCES = "bounces@acme.example"
JANE = "jane@customer.example"
BOB = "bob@other.example"
FAILED_STATUS = "Contact-Failed"
ON_BOUNCED = {
    "name": "A letter bounced",
    "on": "bounced",
    "to": [{"party": "CaseManager"}],
    "subject": "An email on {{ case.id }} bounced",
    "body": "<p>Check the address.</p>",
    "set_status": FAILED_STATUS,
}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def records(port: int, *, two: bool = True, bounce_address: str | None = BOUNCES) -> dict[str, Any]:
    to: list[dict[str, str]] = [{"party": "Customer"}]
    if two:
        to.append({"address": BOB})
    account: dict[str, Any] = {
        "name": ACCOUNT,
        "address": ADDRESS,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
    }
    if bounce_address:
        account["bounce_address"] = bounce_address
    return {
        "operators": [{"id": "carol", "name": "Carol", "email": "carol@acme.example"}],
        "accounts": [account],
        "case_types": [
            {
                "class": MORTGAGE,
                "class_group": ACCOUNT,
                "id_prefix": "M-",
                "parties": {"Customer": "data.customer_email", "CaseManager": "operator:carol"},
                "steps": [
                    {
                        "name": "Welcome",
                        "on": "created",
                        "to": to,
                        "subject": "Your mortgage request",
                        "body": "<p>We have your request.</p>",
                    },
                    ON_BOUNCED,
                ],
            }
        ],
    }


@dataclass(frozen=True, slots=True)
class Sent:
    """A case and its welcome email, delivered to the sink."""

    case_id: str
    outbox_id: int
    message_id: str  # without brackets
    token: str


@contextmanager
def world(database_url: str, **options: Any) -> Iterator[Postroom]:
    """A Postroom on ``database_url`` whose account sends to a real SMTP sink."""
    settings = make_settings(database_url, webhooks=False, **options.pop("settings", {}))
    with smtp_server() as smtp, Postroom(settings) as pr:
        pr.apply(records(smtp.port, **options))
        yield pr


def send_case(pr: Postroom, customer: str = JANE) -> Sent:
    """A new case whose welcome email the agent delivers now."""
    case = pr.cases.create(MORTGAGE, data={"customer_email": customer})
    asyncio.run(pr.agent().run(until_idle=True))
    [entry] = pr.outbox(case_id=case.id)
    assert entry.status == "sent", entry
    o = tables.outbox
    with pr.engine.connect() as conn:
        token = conn.execute(select(o.c.bounce_token).where(o.c.id == entry.id)).scalar_one()
    return Sent(case.id, entry.id, entry.message_id.strip("<>"), token)


def recipients(pr: Postroom, outbox_id: int) -> dict[str, Recipient]:
    return {r.address: r for r in pr.outbox_entry(outbox_id).recipients}


def suppressed(pr: Postroom) -> dict[str, Suppression]:
    with pr.engine.connect() as conn:
        return {s.address: s for s in pr.suppression_store.list(conn)}


def report_rows(pr: Postroom) -> list[Any]:
    with pr.engine.connect() as conn:
        r = tables.delivery_reports
        return list(conn.execute(select(r).order_by(r.c.id)))


def subscribe(pr: Postroom, *events: EventType) -> None:
    endpoint = WebhookEndpoint(
        name="app", url="https://hooks.example/postroom", events=list(events), secret=SECRET
    )
    with pr.engine.begin() as conn:
        pr.webhook_store.put(conn, endpoint)


def events(pr: Postroom, kind: EventType) -> list[dict[str, Any]]:
    e = tables.webhook_events
    with pr.engine.connect() as conn:
        rows = conn.execute(select(e.c.payload).where(e.c.type == str(kind)).order_by(e.c.id))
        return [json.loads(p)["data"] for (p,) in rows]


def deliver(pr: Postroom, raw: bytes, key: str) -> IngestResult:
    return ingest(pr, raw, key=key)
