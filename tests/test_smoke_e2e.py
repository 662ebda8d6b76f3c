"""The reference scenario on both databases, against a real STARTTLS+AUTH server."""

from __future__ import annotations

import asyncio
import ssl

from postroom import Postroom
from tests.fakes import smtp_server

CASE_TYPE = "MyOrg-Mortgage-Work-MortgageRequest"


def mortgage_records(port: int, ca_pem: str) -> dict[str, object]:
    account = {
        "address": "mortgages@example.com",
        "display_name": "MyOrg Mortgages",
        "password": "pw-for-tests",
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "truststore": ca_pem,
    }
    return {
        "operators": [
            {"id": "carol", "name": "Carol Manager", "email": "carol@example.com"},
            {
                "id": "alice",
                "name": "Alice Clerk",
                "email": "alice@example.com",
                "reports_to": "carol",
            },
        ],
        "accounts": [{"name": "MyOrg-Mortgage-Work", **account}],
        "correspondence": [
            {
                "name": "Mortgage case creation",
                "subject": "Mortgage {{ case.id }} created",
                "html": "<p>Dear {{ party.name }}, {{ case.data.applicant }} applied.</p>",
            }
        ],
        "case_types": [
            {
                "class": CASE_TYPE,
                "class_group": "MyOrg-Mortgage-Work",
                "label": "Mortgage Request",
                "id_prefix": "M-",
                "parties": {"CaseManager": "creator.reports_to"},
                "steps": [
                    {
                        "on": "created",
                        "to": [{"party": "CaseManager"}],
                        "correspondence": "Mortgage case creation",
                    }
                ],
            }
        ],
    }


def test_case_manager_is_notified_and_email_attached(
    postroom: Postroom, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(
        starttls=server_tls, credentials=("mortgages@example.com", "pw-for-tests")
    ) as srv:
        postroom.apply(mortgage_records(srv.port, ca_pem))
        case = postroom.cases.create(CASE_TYPE, data={"applicant": "Bob"}, operator="alice")
        stats = asyncio.run(postroom.agent().run(until_idle=True))

    assert stats.sent == 1
    [received] = srv.sink.received
    assert received.rcpt_tos == ["carol@example.com"]
    assert received.message["Subject"] == f"Mortgage {case.id} created"
    assert "Bob applied" in received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    final = postroom.cases.get(case.id)
    [attachment] = final.attachments
    assert attachment.content_type == "message/rfc822"
    _, eml = postroom.cases.attachment(case.id, attachment.name)
    assert eml.replace(b"\r\n", b"\n") == received.raw.replace(b"\r\n", b"\n")
    assert [h.action for h in final.history] == ["created", "email-queued", "email-sent"]
    assert "account MyOrg-Mortgage-Work" in final.history[1].detail
