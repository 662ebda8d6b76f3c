"""``Postroom.send_many``: many ad-hoc emails in one transaction, all of them or none."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from sqlalchemy import event

from postroom import Postroom
from postroom.cases.emails import EmailRequest
from postroom.errors import InvalidFieldsError, MessageError, NoAccountError, NotFoundError
from postroom.identity import Scope
from postroom.outbox import OutboxStatus, Priority
from postroom.sending import MAX_SEND_MANY
from tests.apikit import client, issue_tokens
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_delivery import account, run_agent

LETTER = {"name": "Notice", "subject": "Notice for {{ account.display_name }}", "html": "<p>Hi</p>"}


def test_a_batch_is_queued_in_order_and_delivered(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(srv.port)], "correspondence": [LETTER]})
        requests = [
            EmailRequest.addressed(to=[f"user{n}@example.net"], correspondence="Notice")
            for n in range(30)
        ] + [EmailRequest.addressed(to=["last@example.net"], subject="Inline", body="<b>x</b>")]
        ids = pr.send_many(requests)
        assert len(ids) == 31
        assert ids == sorted(ids)
        entries = [pr.outbox_entry(i) for i in ids]
        assert [e.recipients[0].address for e in entries[:3]] == [
            "user0@example.net", "user1@example.net", "user2@example.net",
        ]  # fmt: skip
        assert entries[-1].subject == "Inline"
        run_agent(pr)
        assert all(pr.outbox_entry(i).status is OutboxStatus.SENT for i in ids)
        got = {str(message_from_bytes(r.raw)["To"]) for r in srv.sink.received}
        assert got == {f"user{n}@example.net" for n in range(30)} | {"last@example.net"}


def test_one_bad_email_queues_none_and_names_which(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(2525)], "correspondence": [LETTER]})
        good = EmailRequest.addressed(to=["a@example.net"], correspondence="Notice")
        bad = EmailRequest.addressed(to=["b@example.net"], correspondence="No such letter")
        with pytest.raises(NotFoundError, match=r"no correspondence named 'No such") as info:
            pr.send_many([good, good, bad, good])
        assert isinstance(info.value, InvalidFieldsError)
        assert [i.field for i in info.value.issues] == ["emails.2.correspondence"]
        assert pr.outbox_counts().get(OutboxStatus.QUEUED, 0) == 0


def test_a_bad_address_is_refused_before_anything_is_queued() -> None:
    with pytest.raises(MessageError, match="not a valid email address") as info:
        EmailRequest.addressed(to=["a@example.net", "not an address"], subject="s", body="b")
    assert isinstance(info.value, InvalidFieldsError)
    assert [i.field for i in info.value.issues] == ["to.1"]


def test_the_account_is_resolved_and_looked_up_once_per_batch(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(2525)], "correspondence": [LETTER]})
        statements: list[str] = []

        def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
            statements.append(statement)

        event.listen(pr.engine, "before_cursor_execute", seen)
        try:
            pr.send_many(
                [
                    EmailRequest.addressed(to=[f"u{n}@example.net"], correspondence="Notice")
                    for n in range(50)
                ],
                class_name="MyOrg-Notices",
            )
        finally:
            event.remove(pr.engine, "before_cursor_execute", seen)
        # MyOrg-Notices, MyOrg, then Default: three existence checks and one read, not
        # four per email.
        account_reads = [s for s in statements if "FROM accounts" in s]
        assert len(account_reads) == 4, account_reads
        assert len(pr.outbox()) == 50


def test_priority_and_class_are_kept_and_a_missing_account_is_clear(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        with pytest.raises(NoAccountError, match="class_name: no email account for class MyOrg-"):
            pr.send_many(
                [EmailRequest.addressed(to=["a@example.net"], subject="s", body="b")],
                class_name="MyOrg-Notices",
            )
        pr.apply({"accounts": [account(2525)]})
        (high,) = pr.send_many(
            [EmailRequest.addressed(to=["a@example.net"], subject="s", body="b",
                                    priority=Priority.HIGH)]
        )  # fmt: skip
        assert pr.outbox_entry(high).priority is Priority.HIGH


def test_a_batch_is_bounded(sqlite_postroom: Postroom) -> None:
    request = EmailRequest.addressed(to=["a@example.net"], subject="s", body="b")
    with pytest.raises(MessageError, match="at most 10,000 emails per call"):
        sqlite_postroom.send_many([request] * (MAX_SEND_MANY + 1))
    assert sqlite_postroom.send_many([]) == []


def test_the_api_queues_a_batch_once_and_only_its_owner_reads_it(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [account(2525)], "correspondence": [LETTER]})
    tokens = issue_tokens(pr)
    other = pr.identity.create_token(name="other", scopes={Scope.SEND}).value
    api = client(pr)
    body = {
        "class_name": "MyOrg-Notices",
        "emails": [
            {"to": [f"u{n}@example.net"], "correspondence": "Notice", "priority": "low"}
            for n in range(3)
        ],
    }
    headers = tokens.send | {"Idempotency-Key": "batch-1"}
    first = api.post("/api/v1/emails/batch", json=body, headers=headers)
    assert first.status_code == 201, first.text
    ids = first.json()["ids"]
    assert len(ids) == 3
    again = api.post("/api/v1/emails/batch", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["ids"] == ids
    assert len(pr.outbox()) == 3  # the replay queued nothing
    changed = api.post("/api/v1/emails/batch", json={**body, "class_name": "X"}, headers=headers)
    assert changed.status_code == 422
    mine = api.get(f"/api/v1/emails/{ids[0]}", headers=tokens.send)
    assert mine.status_code == 200
    assert mine.json()["priority"] == "low"
    theirs = api.get(f"/api/v1/emails/{ids[0]}", headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404


def test_the_api_refuses_a_bad_batch_whole(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [account(2525)], "correspondence": [LETTER]})
    api, send = client(pr), issue_tokens(pr).send
    good = {"to": ["a@example.net"], "correspondence": "Notice"}
    unknown = api.post(
        "/api/v1/emails/batch",
        json={"emails": [good, {"to": ["b@example.net"], "correspondence": "Nope"}]},
        headers=send,
    )
    assert unknown.status_code == 422, unknown.text
    assert "no correspondence named 'Nope'" in unknown.json()["detail"]
    assert [e["field"] for e in unknown.json()["errors"]] == ["body.emails.1.correspondence"]
    too_many = api.post("/api/v1/emails/batch", json={"emails": [good] * 1001}, headers=send)
    assert too_many.status_code == 422
    bad_address = api.post(
        "/api/v1/emails/batch", json={"emails": [{**good, "to": ["not an address"]}]}, headers=send
    )
    assert bad_address.status_code == 422
    assert [e["field"] for e in bad_address.json()["errors"]] == ["body.emails.0.to.0"]
    assert pr.outbox() == []
