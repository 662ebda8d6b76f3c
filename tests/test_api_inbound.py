"""REST API, received mail: the triage list, one message and its raw bytes, attach, open a
case, dismiss, and a case's conversation; scopes, unknown ids and refused transitions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.inbound.models import FetchedMessage, MailboxRef
from tests.apikit import MINIMAL_RECORDS, Tokens, client, issue_tokens
from tests.conftest import make_settings

API = "/api/v1"
MAILBOX = MailboxRef("Default", "INBOX")
SENDER = "Jane Customer <jane@customer.example>"
HOSTILE_SUBJECT = "<script>alert(1)</script> {{ 7*7 }} [C-999]"


def mail(
    *,
    subject: str = "A question",
    sender: str = SENDER,
    to: str = "a@example.com",
    text: str = "Hello,\n\nplease call me back.\n\nJane\n",
    html: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    """A received mail as a client writes it, built with the email library."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="customer.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


_KEYS = itertools.count(1)


def receive(pr: Postroom, raw: bytes) -> int:
    """Ingest ``raw`` as the listener would (a new server key each time); its id."""
    item = FetchedMessage(key=str(next(_KEYS)), size=len(raw), raw=raw)
    return pr.ingestor.ingest(MAILBOX, item, validity=None).id


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'api.db'}")) as opened:
        opened.apply(MINIMAL_RECORDS)
        yield opened


@pytest.fixture
def tokens(pr: Postroom) -> Tokens:
    return issue_tokens(pr)


@pytest.fixture
def api(pr: Postroom) -> Iterator[TestClient]:
    with client(pr) as c:
        yield c


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _case(api: TestClient, headers: dict[str, str]) -> str:
    made = api.post(f"{API}/cases", json={"class_name": "A-B-C"}, headers=headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _sent(api: TestClient, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    queued = api.post(
        f"{API}/emails",
        json={
            "to": ["jane@customer.example"],
            "subject": "Your request",
            "body": "<p>We received it.</p>",
            "case_id": case_id,
        },
        headers=headers,
    )
    assert queued.status_code == 201, queued.text
    email: dict[str, Any] = queued.json()["emails"][0]
    return email


def test_the_triage_list_filters_and_pages(api: TestClient, pr: Postroom, tokens: Tokens) -> None:
    case_id = _case(api, tokens.admin)
    email = _sent(api, tokens.admin, case_id)
    matched = receive(pr, mail(subject="Re: Your request", in_reply_to=email["message_id"]))
    waiting = [receive(pr, mail(subject=f"Question {n}")) for n in range(3)]

    everything = api.get(f"{API}/inbound", headers=tokens.admin)
    assert everything.status_code == 200, everything.text
    assert {m["id"] for m in everything.json()["items"]} == {matched, *waiting}
    assert everything.json()["next"] is None

    triage = api.get(f"{API}/inbound", params={"unmatched": "true"}, headers=tokens.admin).json()
    assert {m["id"] for m in triage["items"]} == set(waiting)
    assert all(m["status"] == "unmatched" and m["case_id"] is None for m in triage["items"])

    of_case = api.get(f"{API}/inbound", params={"case_id": case_id}, headers=tokens.admin).json()
    [only] = of_case["items"]
    assert (only["id"], only["status"], only["case_id"]) == (matched, "matched", case_id)
    assert email["message_id"].strip("<>") in only["reason"]
    by_status = api.get(f"{API}/inbound", params={"status": "matched"}, headers=tokens.admin)
    assert [m["id"] for m in by_status.json()["items"]] == [matched]

    # Pages of two: the next link gives the rest, and nothing twice.
    first = api.get(f"{API}/inbound", params={"limit": 2}, headers=tokens.admin).json()
    assert len(first["items"]) == 2
    assert first["next"] is not None
    second = api.get(first["next"], headers=tokens.admin).json()
    seen = [m["id"] for m in first["items"] + second["items"]]
    assert sorted(seen) == sorted([matched, *waiting])
    assert second["next"] is None


def test_bad_list_parameters_are_field_errors(api: TestClient, tokens: Tokens) -> None:
    for params, field in (
        ({"status": "lost"}, "query.status"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "201"}, "query.limit"),
        ({"offset": "-1"}, "query.offset"),
        ({"unmatched": "perhaps"}, "query.unmatched"),
        ({"unmatched": "true", "status": "matched"}, "query.status"),
        ({"case_id": ""}, "query.case_id"),
    ):
        body = _problem(api.get(f"{API}/inbound", params=params, headers=tokens.admin), 422)
        assert [e["field"] for e in body["errors"]] == [field], params


def test_a_message_is_shown_with_its_routing_and_its_raw_bytes_download(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    raw = mail(
        subject=HOSTILE_SUBJECT,
        sender='"{{ 7*7 }} <b>Mallory</b>" <mallory@stranger.example>',
        html="<p onclick='x()'>Hi<script>alert(1)</script></p>",
    )
    message_id = receive(pr, raw)
    shown = api.get(f"{API}/inbound/{message_id}", headers=tokens.admin)
    assert shown.status_code == 200, shown.text
    view = shown.json()
    # Data, as received: JSON carries it verbatim, nothing is rendered.
    assert view["subject"] == HOSTILE_SUBJECT
    assert view["from_name"] == "{{ 7*7 }} <b>Mallory</b>"
    assert view["from_address"] == "mallory@stranger.example"
    # A stranger's subject token does not attach mail to a case (there is none anyway).
    assert view["status"] == "unmatched"
    assert view["reason"]
    assert "raw" not in view

    got = api.get(f"{API}/inbound/{message_id}/raw", headers=tokens.admin)
    assert got.status_code == 200
    assert got.content == raw
    assert got.headers["content-type"] == "message/rfc822"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")


def test_a_message_too_large_to_read_has_no_raw_bytes_to_give(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    item = FetchedMessage(key="big-1", size=30 * 1024 * 1024, raw=None)
    message_id = pr.ingestor.ingest(MAILBOX, item, validity="1").id
    view = api.get(f"{API}/inbound/{message_id}", headers=tokens.admin).json()
    assert (view["status"], view["server_state"]) == ("too_large", "left")
    body = _problem(api.get(f"{API}/inbound/{message_id}/raw", headers=tokens.admin), 409)
    assert "too large" in body["detail"]
    # Neither triage action applies to it.
    _problem(api.post(f"{API}/inbound/{message_id}/dismiss", headers=tokens.admin), 409)


def test_unknown_and_impossible_ids(api: TestClient, tokens: Tokens) -> None:
    for path in ("/inbound/999", "/inbound/999/raw"):
        body = _problem(api.get(API + path, headers=tokens.admin), 404)
        assert "999" in body["detail"]
    for path, payload in (
        ("/inbound/999/attach", {"case_id": "C-1"}),
        ("/inbound/999/case", {"class_name": "A-B-C"}),
        ("/inbound/999/dismiss", None),
    ):
        _problem(api.post(API + path, json=payload, headers=tokens.admin), 404)
    for bad in ("0", "abc", str(2**31)):
        _problem(api.get(f"{API}/inbound/{bad}", headers=tokens.admin), 422)


def test_attach_moves_a_message_onto_a_case_once(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    case_id = _case(api, tokens.admin)
    message_id = receive(pr, mail(subject="Where do I send the documents?"))

    missing = api.post(
        f"{API}/inbound/{message_id}/attach", json={"case_id": "C-404"}, headers=tokens.admin
    )
    body = _problem(missing, 422)
    assert [e["field"] for e in body["errors"]] == ["body.case_id"]
    for bad in ({}, {"case_id": ""}, {"case_id": "C-1", "extra": 1}, {"case_id": "x" * 65}):
        _problem(
            api.post(f"{API}/inbound/{message_id}/attach", json=bad, headers=tokens.admin), 422
        )
    assert pr.received_message(message_id).status == "unmatched"  # nothing done meanwhile

    done = api.post(
        f"{API}/inbound/{message_id}/attach", json={"case_id": case_id}, headers=tokens.admin
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["case_id"]) == ("matched", case_id)
    case = api.get(f"{API}/cases/{case_id}", headers=tokens.admin).json()
    assert f"received-{message_id}.eml" in {a["name"] for a in case["attachments"]}

    # The transition table refuses a second attach: 409, and the case keeps one copy.
    again = api.post(
        f"{API}/inbound/{message_id}/attach", json={"case_id": case_id}, headers=tokens.admin
    )
    assert f"is already on case {case_id}" in _problem(again, 409)["detail"]
    dismissed = api.post(f"{API}/inbound/{message_id}/dismiss", headers=tokens.admin)
    _problem(dismissed, 409)
    case = api.get(f"{API}/cases/{case_id}", headers=tokens.admin).json()
    names = [a["name"] for a in case["attachments"]]
    assert names.count(f"received-{message_id}.eml") == 1


def test_a_case_is_opened_from_a_message(api: TestClient, pr: Postroom, tokens: Tokens) -> None:
    message_id = receive(pr, mail(subject="I would like a mortgage"))
    unknown = api.post(
        f"{API}/inbound/{message_id}/case",
        json={"class_name": "No-Such-Type"},
        headers=tokens.admin,
    )
    assert [e["field"] for e in _problem(unknown, 422)["errors"]] == ["body.class_name"]
    _problem(
        api.post(f"{API}/inbound/{message_id}/case", json={"class_name": ""}, headers=tokens.admin),
        422,
    )

    made = api.post(
        f"{API}/inbound/{message_id}/case", json={"class_name": "A-B-C"}, headers=tokens.admin
    )
    assert made.status_code == 201, made.text
    case = made.json()
    assert case["class_name"] == "A-B-C"
    assert made.headers["location"].endswith(f"/cases/{case['id']}")
    shown = api.get(f"{API}/inbound/{message_id}", headers=tokens.admin).json()
    assert (shown["status"], shown["case_id"]) == ("new_case", case["id"])
    # Only once: a second case from the same message is refused.
    twice = api.post(
        f"{API}/inbound/{message_id}/case", json={"class_name": "A-B-C"}, headers=tokens.admin
    )
    _problem(twice, 409)


def test_dismiss_takes_a_message_off_triage_and_it_can_still_be_attached(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    case_id = _case(api, tokens.admin)
    message_id = receive(pr, mail(subject="Unsubscribe me"))
    dismissed = api.post(f"{API}/inbound/{message_id}/dismiss", headers=tokens.admin)
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["status"] == "dismissed"
    triage = api.get(f"{API}/inbound", params={"unmatched": "true"}, headers=tokens.admin)
    assert triage.json()["items"] == []
    _problem(api.post(f"{API}/inbound/{message_id}/dismiss", headers=tokens.admin), 409)
    attached = api.post(
        f"{API}/inbound/{message_id}/attach", json={"case_id": case_id}, headers=tokens.admin
    )
    assert attached.status_code == 200, attached.text


def test_the_conversation_is_sent_and_received_mail_in_time_order(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    case_id = _case(api, tokens.send)
    assert api.get(f"{API}/cases/{case_id}/messages", headers=tokens.send).json() == []
    email = _sent(api, tokens.send, case_id)
    reply = receive(
        pr,
        mail(
            subject="Re: Your request",
            text="Thanks!\n\nOn Monday, Acme wrote:\n> We received it.\n",
            in_reply_to=email["message_id"],
        ),
    )
    got = api.get(f"{API}/cases/{case_id}/messages", headers=tokens.send)
    assert got.status_code == 200, got.text
    items = got.json()
    assert [(i["kind"], i["id"]) for i in items] == [("sent", email["id"]), ("received", reply)]
    assert items[0]["at"] <= items[1]["at"]
    sent, received = items
    assert sent["subject"] == "Your request"
    assert sent["to"] == ["jane@customer.example"]
    assert received["from_address"] == "jane@customer.example"
    assert received["status"] == "matched"
    assert received["text"].startswith("Thanks!")
    assert "We received it" not in received["text"]  # the quoted history is not the reply

    _problem(api.get(f"{API}/cases/C-404/messages", headers=tokens.admin), 404)


def test_a_send_token_reads_only_its_own_conversations_and_no_inbound_route(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    mine = _case(api, tokens.send)
    theirs = _case(api, tokens.admin)
    message_id = receive(pr, mail())
    assert api.get(f"{API}/cases/{mine}/messages", headers=tokens.send).status_code == 200
    # Another client's case is hidden, as reading the case itself is.
    _problem(api.get(f"{API}/cases/{theirs}/messages", headers=tokens.send), 404)
    assert api.get(f"{API}/cases/{theirs}/messages", headers=tokens.admin).status_code == 200
    for method, path, payload in (
        ("GET", "/inbound", None),
        ("GET", f"/inbound/{message_id}", None),
        ("GET", f"/inbound/{message_id}/raw", None),
        ("POST", f"/inbound/{message_id}/attach", {"case_id": mine}),
        ("POST", f"/inbound/{message_id}/case", {"class_name": "A-B-C"}),
        ("POST", f"/inbound/{message_id}/dismiss", None),
    ):
        refused = api.request(method, API + path, json=payload, headers=tokens.send)
        assert _problem(refused, 403)["type"].endswith("insufficient-scope"), path
    assert pr.received_message(message_id).status == "unmatched"


def test_the_inbound_routes_are_documented(api: TestClient, tokens: Tokens) -> None:
    document = api.get(f"{API}/openapi.json").json()
    paths = document["paths"]
    operations = {
        paths["/inbound"]["get"]["operationId"],
        paths["/inbound/{message_id}"]["get"]["operationId"],
        paths["/inbound/{message_id}/raw"]["get"]["operationId"],
        paths["/inbound/{message_id}/attach"]["post"]["operationId"],
        paths["/inbound/{message_id}/case"]["post"]["operationId"],
        paths["/inbound/{message_id}/dismiss"]["post"]["operationId"],
        paths["/cases/{case_id}/messages"]["get"]["operationId"],
    }
    assert len(operations) == 7
    assert (
        "message/rfc822" in paths["/inbound/{message_id}/raw"]["get"]["responses"]["200"]["content"]
    )
    assert "409" in paths["/inbound/{message_id}/attach"]["post"]["responses"]
    assert paths["/cases/{case_id}/messages"]["get"]["tags"] == ["cases"]
    schemas = document["components"]["schemas"]
    assert schemas["ReceivedView"]["examples"]
    assert schemas["AttachToCase"]["examples"]
