"""Bounces end to end: a case's email to two recipients sent with a VERP envelope sender
to a real SMTP server, an RFC 3464 report for one of them appended to a real Dovecot
mailbox, read by ``poll_inbound``: that recipient bounced, the case told, the address
suppressed, and the next email sent to the other recipient only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.bounces.verp import token_in
from postroom.outbox.models import RecipientState
from postroom.suppression import SuppressionReason
from tests import bouncesamples as samples
from tests.conftest import make_settings
from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture
from tests.fakes import SmtpSink, smtp_server

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(300)]

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()

CLASS = "MyOrg-Mortgage-Work-MortgageRequest"
ACCOUNT = "MyOrg-Mortgage-Work"
FAILED = "Contact-Failed"
CUSTOMER = "customer@example.org"
ADVISOR = "advisor@broker.example"


def records(mailbox: Mailbox, port: int) -> dict[str, Any]:
    """Mortgage letters to the customer and the advisor; a bounce tells the case manager."""
    account = {**mailbox.account_yaml(ACCOUNT), "port": port}
    local, _, domain = account["address"].partition("@")
    account["bounce_address"] = f"{local}-bounces@{domain}"
    letter = {
        "to": [{"party": "Customer"}, {"address": ADVISOR}],
        "subject": "Your mortgage offer {{ case.id }}",
        "body": "<p>Please find our offer.</p>",
    }
    return {
        "operators": [{"id": "carol", "name": "Carol Manager", "email": "carol@example.com"}],
        "accounts": [account],
        "case_types": [
            {
                "class": CLASS,
                "class_group": ACCOUNT,
                "id_prefix": "M-",
                "parties": {"CaseManager": "operator:carol", "Customer": "data.customer"},
                "steps": [
                    {"name": "Offer", "on": "created", **letter},
                    {"name": "Offer again", "on": {"status": "Resend"}, **letter},
                    {
                        "name": "Tell the case manager",
                        "on": "bounced",
                        "to": [{"party": "CaseManager"}],
                        "subject": "A letter on {{ case.id }} bounced",
                        "body": "<p>Find another way to reach the customer.</p>",
                        "set_status": FAILED,
                    },
                ],
            }
        ],
    }


def test_a_bounce_read_from_the_mailbox_marks_suppresses_and_tells_the_case(
    mailbox: Mailbox, tmp_path: Path
) -> None:
    sink = SmtpSink()
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}", webhooks=False)
    with smtp_server(sink) as smtp, Postroom(settings) as pr:
        pr.apply(records(mailbox, smtp.port))
        bounce_address = pr.account(ACCOUNT).bounce_address
        assert bounce_address is not None
        case = pr.cases.create(CLASS, data={"customer": CUSTOMER})
        asyncio.run(pr.agent().run(until_idle=True))
        [offer] = pr.outbox(case_id=case.id)
        assert offer.status == "sent"

        # Sent with VERP: the envelope sender names this email.
        [delivered] = sink.received
        token = token_in(delivered.mail_from, bounce_address)
        assert token is not None
        assert sorted(delivered.rcpt_tos) == sorted([CUSTOMER, ADVISOR])

        # The customer's server refuses later: its report comes to the VERP address.
        report = samples.postfix_dsn(
            recipient=CUSTOMER, to=delivered.mail_from, message_id=None, envid=token
        )
        mailbox.append(report)
        polled = pr.poll_inbound(ACCOUNT)
        assert (polled.read, polled.bounces) == (1, 1)

        now = {r.address: r for r in pr.outbox_entry(offer.id).recipients}
        assert now[CUSTOMER].state is RecipientState.BOUNCED
        assert now[CUSTOMER].enhanced == "5.1.1"
        assert "Recipient address rejected" in now[CUSTOMER].text
        assert now[ADVISOR].state is RecipientState.ACCEPTED
        assert pr.outbox_entry(offer.id).status == "sent"

        shown = pr.cases.get(case.id)
        assert shown.status == FAILED
        [line] = [h.detail for h in shown.history if h.action == "email-bounced"]
        assert CUSTOMER in line
        assert "5.1.1" in line
        told = [e for e in pr.outbox(case_id=case.id) if "bounced" in e.subject]
        assert [[r.address for r in e.recipients] for e in told] == [["carol@example.com"]]
        with pr.engine.connect() as conn:
            entry = pr.suppression_store.get(conn, CUSTOMER, scope=ACCOUNT)
        assert entry is not None
        assert entry.reason is SuppressionReason.HARD_BOUNCE

        # Polled again: nothing read; the same report delivered twice is taken once.
        assert pr.poll_inbound(ACCOUNT).read == 0
        mailbox.append(report)
        again = pr.poll_inbound(ACCOUNT)
        assert (again.read, again.duplicates, again.bounces) == (1, 1, 0)
        assert len([h for h in pr.cases.get(case.id).history if h.action == "email-bounced"]) == 1

        # The next letter goes to the advisor only; the customer is suppressed.
        pr.cases.set_status(case.id, "Resend")
        asyncio.run(pr.agent().run(until_idle=True))
        [resent] = [
            e for e in pr.outbox(case_id=case.id) if e.id > offer.id and "offer" in e.subject
        ]
        assert resent.status == "sent"
        states = {r.address: r.state for r in resent.recipients}
        assert states == {CUSTOMER: RecipientState.SUPPRESSED, ADVISOR: RecipientState.ACCEPTED}
        attempted = [r.rcpt_tos for r in sink.received if "offer" in r.message["subject"]]
        assert attempted[-1] == [ADVISOR]
