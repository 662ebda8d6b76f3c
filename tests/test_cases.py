"""Cases: ids, work parties, steps on creation and status, account choice, failures recorded."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from sqlalchemy import event

from postroom import Postroom
from postroom.cases import store as case_store
from postroom.errors import ConfigurationError, MessageError, NotFoundError
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings
from tests.fakes import free_port, smtp_server

CLASS = "MyOrg-Mortgage-Work-MortgageRequest"


def records(
    port: int, *, steps: list[dict[str, Any]], accounts: list[str] | None = None
) -> dict[str, Any]:
    names = ["MyOrg-Mortgage-Work"] if accounts is None else accounts
    return {
        "operators": [
            {"id": "carol", "name": "Carol", "email": "carol@example.com"},
            {"id": "alice", "name": "Alice", "email": "alice@example.com", "reports_to": "carol"},
            {"id": "nomgr", "name": "No Manager", "email": "n@example.com"},
        ],
        "accounts": [
            {
                "name": n,
                "address": f"{n.lower()}@example.com",
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
            }
            for n in names
        ],
        "correspondence": [
            {"name": "Signature", "html": "<p>-- {{ account.display_name or account.name }}</p>"},
            {
                "name": "Created",
                "subject": "Case {{ case.id }} ({{ case.type }})",
                "html": "<p>Hello {{ party.name }}</p>{% include 'Signature' %}",
            },
        ],
        "case_types": [
            {
                "class": CLASS,
                "class_group": "MyOrg-Mortgage-Work",
                "label": "Mortgage Request",
                "id_prefix": "M-",
                "parties": {
                    "Owner": "creator",
                    "CaseManager": "creator.reports_to",
                    "Customer": "data.customer_email",
                },
                "steps": steps,
            }
        ],
    }


CREATED_STEP = {"on": "created", "to": [{"party": "CaseManager"}], "correspondence": "Created"}


def run_agent(postroom: Postroom) -> None:
    asyncio.run(postroom.agent().run(until_idle=True))


def test_ids_come_from_the_prefix(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    ids = [postroom.cases.create(CLASS, operator="alice").id for _ in range(3)]
    assert ids == ["M-1", "M-2", "M-3"]


def test_parties_are_added_on_creation(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    case = postroom.cases.create(
        CLASS, data={"customer_email": "bob@example.org"}, operator="alice"
    )
    parties = {p.role: p.address for p in case.parties}
    assert parties == {
        "Owner": "alice@example.com",
        "CaseManager": "carol@example.com",
        "Customer": "bob@example.org",
    }


def test_missing_party_is_noted_not_fatal(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    case = postroom.cases.create(CLASS, operator="nomgr")
    assert "CaseManager" not in {p.role for p in case.parties}
    assert any("CaseManager not added" in h.detail for h in case.history)


def test_created_step_sends_from_the_work_pool_account(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(
            records(srv.port, steps=[CREATED_STEP], accounts=["MyOrg-Mortgage-Work", "Default"])
        )
        case = postroom.cases.create(CLASS, operator="alice")
        run_agent(postroom)
    [msg] = srv.sink.received
    assert msg.mail_from == "myorg-mortgage-work@example.com"
    assert msg.message["Subject"] == f"Case {case.id} (Mortgage Request)"
    assert msg.message["X-Postroom-Case"] == case.id
    [queued] = [h for h in postroom.cases.get(case.id).history if h.action == "email-queued"]
    assert "account MyOrg-Mortgage-Work: matches class MyOrg-Mortgage-Work" in queued.detail


def test_default_account_is_the_fallback(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port, steps=[CREATED_STEP], accounts=["Default"]))
        case = postroom.cases.create(CLASS, operator="alice")
        run_agent(postroom)
    assert srv.sink.received[0].mail_from == "default@example.com"
    [queued] = [h for h in postroom.cases.get(case.id).history if h.action == "email-queued"]
    assert "fell back to Default" in queued.detail


def test_no_account_is_a_recorded_failure_not_a_silent_drop(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[CREATED_STEP], accounts=[]))
    case = postroom.cases.create(CLASS, operator="alice")
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.FAILED
    assert "no email account for class" in (entry.last_error or "")
    assert case.history[-1].action == "email-failed"
    assert "Default" in case.history[-1].detail


def test_status_step_fires_on_entering_the_status(postroom: Postroom) -> None:
    step = {
        "on": {"status": "Resolved-Completed"},
        "to": [{"party": "Customer"}],
        "cc": [{"operator": "carol"}],
        "bcc": [{"address": "audit@example.com"}],
        "subject": "Done: {{ case.id }}",
        "body": "<p>{{ case.data.customer_email }}</p>",
        "include_attachments": True,
    }
    with smtp_server() as srv:
        postroom.apply(records(srv.port, steps=[step]))
        case = postroom.cases.create(
            CLASS, data={"customer_email": "bob@example.org"}, operator="alice"
        )
        postroom.cases.attach(case.id, name="offer.pdf", content=b"%PDF-1.4 offer")
        postroom.cases.set_status(case.id, "Pending-Review")
        run_agent(postroom)
        assert srv.sink.received == []
        postroom.cases.set_status(case.id, "Resolved-Completed", operator="carol")
        run_agent(postroom)
    [msg] = srv.sink.received
    assert msg.rcpt_tos == ["bob@example.org", "carol@example.com", "audit@example.com"]
    assert msg.message["Cc"] == "Carol <carol@example.com>"
    assert msg.message["Bcc"] is None
    [attached] = list(msg.message.iter_attachments())
    assert attached.get_filename() == "offer.pdf"
    assert attached.get_content() == b"%PDF-1.4 offer"


def test_field_recipient_must_hold_an_address(postroom: Postroom) -> None:
    step = {"on": "created", "to": [{"field": "notify"}], "subject": "s", "body": "b"}
    postroom.apply(records(25, steps=[step]))
    case = postroom.cases.create(CLASS, data={"notify": "nope"}, operator="alice")
    assert case.history[-1].action == "email-failed"
    assert "not a valid email address" in case.history[-1].detail


def test_party_from_a_bad_address_refuses_the_case(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    with pytest.raises(ConfigurationError, match=r"Customer .* not a valid email address"):
        postroom.cases.create(CLASS, data={"customer_email": "nope"}, operator="alice")
    assert postroom.cases.recent() == []


def test_immediate_mode_sends_before_returning(postroom: Postroom) -> None:
    step = {**CREATED_STEP, "mode": "immediate"}
    with smtp_server() as srv:
        postroom.apply(records(srv.port, steps=[step]))
        case = postroom.cases.create(CLASS, operator="alice")
        assert len(srv.sink.received) == 1  # no agent ran
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.SENT
    assert [a.name for a in case.attachments] == [f"email-{entry.id}.eml"]


def test_immediate_mode_failure_leaves_it_for_the_agent(postroom: Postroom) -> None:
    step = {**CREATED_STEP, "mode": "immediate"}
    postroom.apply(records(free_port(), steps=[step]))  # nothing listens there
    case = postroom.cases.create(CLASS, operator="alice")
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.RETRY
    assert "cannot connect" in (entry.last_error or "")


def test_bad_input_is_refused_clearly(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    with pytest.raises(NotFoundError, match="no case type"):
        postroom.cases.create("Nope-Nope")
    with pytest.raises(NotFoundError, match="no operator"):
        postroom.cases.create(CLASS, operator="ghost")
    with pytest.raises(ConfigurationError, match="plain identifier"):
        postroom.cases.create(CLASS, data={"bad key": 1})
    case = postroom.cases.create(CLASS)
    with pytest.raises(ConfigurationError, match="status"):
        postroom.cases.set_status(case.id, "Bad\nStatus")
    with pytest.raises(NotFoundError):
        postroom.cases.set_status("M-999", "Open")
    with pytest.raises(ConfigurationError, match="file name"):
        postroom.cases.attach(case.id, name="..", content=b"x")


def test_send_ad_hoc_resolves_the_account(postroom: Postroom, server_tls: ssl.SSLContext) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port, steps=[], accounts=["MyOrg-Mortgage", "Default"]))
        outbox_id = postroom.send(
            to=["x@example.com"],
            subject="Hi {{ case.type }}",
            body="<p>b</p>",
            class_name="MyOrg-Mortgage-Work-Other",
            template=True,
        )
        run_agent(postroom)
    assert postroom.outbox_entry(outbox_id).account == "MyOrg-Mortgage"
    assert srv.sink.received[0].message["Subject"] == "Hi MyOrg-Mortgage-Work-Other"


def test_setting_the_same_status_again_sends_nothing_more(postroom: Postroom) -> None:
    step = {
        "on": {"status": "Approved"},
        "to": [{"operator": "carol"}],
        "subject": "s",
        "body": "b",
    }
    postroom.apply(records(25, steps=[step]))
    case = postroom.cases.create(CLASS, operator="alice")
    postroom.cases.set_status(case.id, "Approved")
    again = postroom.cases.set_status(case.id, "Approved")
    assert len(postroom.outbox(case_id=case.id)) == 1
    assert [h.action for h in again.history].count("status") == 1


def test_class_group_account_is_tried_before_default(postroom: Postroom) -> None:
    data = records(25, steps=[CREATED_STEP], accounts=["Pool", "Default"])
    data["case_types"][0]["class_group"] = "Pool"
    postroom.apply(data)
    case = postroom.cases.create(CLASS, operator="alice")
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.account == "Pool"


def test_internationalised_addresses_are_refused_clearly(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[], accounts=["Default"]))
    with pytest.raises(MessageError, match="internationalised addresses are not supported"):
        postroom.send(to=["ü@exämple.com"], subject="s", body="b")


def test_attachment_names_are_unique_and_sent_email_names_are_reserved(
    postroom: Postroom,
) -> None:
    postroom.apply(records(25, steps=[]))
    case = postroom.cases.create(CLASS, operator="alice")
    postroom.cases.attach(case.id, name="dup.txt", content=b"first")
    with pytest.raises(ConfigurationError, match=r"already has an attachment named dup\.txt"):
        postroom.cases.attach(case.id, name="dup.txt", content=b"second")
    for forged in ("email-18.eml", "EMAIL-1.EML"):
        with pytest.raises(ConfigurationError, match="kept for the emails Postroom sends"):
            postroom.cases.attach(case.id, name=forged, content=b"From: me\r\n\r\nfake")
    with pytest.raises(ConfigurationError, match="at most 200 characters"):
        postroom.cases.attach(case.id, name="x" * 201 + ".txt", content=b"x")
    assert postroom.cases.attachment(case.id, "dup.txt")[1] == b"first"
    assert [a.name for a in postroom.cases.get(case.id).attachments] == ["dup.txt"]


@pytest.mark.postgres
def test_an_upload_racing_for_the_same_name_is_refused(postgres_url: str) -> None:
    # PostgreSQL reads committed rows: both uploads pass the check made in code, and the
    # database's unique index decides. Here the other one commits in that window.
    with Postroom(make_settings(postgres_url)) as pr:
        pr.apply(records(25, steps=[]))
        case = pr.cases.create(CLASS, operator="alice")
        raced: list[bool] = []

        def other_upload_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO case_attachments") and not raced:
                raced.append(True)
                with pr.engine.begin() as other:
                    case_store.add_attachment(
                        other, case.id, name="dup.txt", content_type="text/plain", content=b"1"
                    )

        event.listen(pr.engine, "before_cursor_execute", other_upload_first)
        with pytest.raises(ConfigurationError, match=r"already has an attachment named dup\.txt"):
            pr.cases.attach(case.id, name="dup.txt", content=b"second")
        event.remove(pr.engine, "before_cursor_execute", other_upload_first)
        stored = pr.cases.get(case.id)
        content = pr.cases.attachment(case.id, "dup.txt")[1]
    assert raced == [True]
    assert [a.name for a in stored.attachments] == ["dup.txt"]
    assert content == b"1"
    assert [h.action for h in stored.history].count("attached") == 0  # rolled back


def test_case_data_is_bounded_and_json(postroom: Postroom) -> None:
    postroom.apply(records(25, steps=[]))
    with pytest.raises(ConfigurationError, match="at most 256 KB"):
        postroom.cases.create(CLASS, data={"note": "x" * 300_000}, operator="alice")
    with pytest.raises(ConfigurationError, match="NaN or Infinity"):
        postroom.cases.create(CLASS, data={"amount": float("nan")}, operator="alice")
    assert postroom.cases.recent() == []
