"""Admin Studio, inbound mail: the account form's inbound settings, the triage list, a
received message's page and the case's conversation timeline (server-side HTML)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.db.paging import Page
from postroom.inbound.models import FetchedMessage, InboundStatus, MailboxRef, ReceivedMessage
from postroom.inbound.search import InboundQuery, search_received
from postroom.inbound.settings import AfterIngest, InboundProtocol
from postroom.web.mail import BODY_POLICY
from postroom.web.pages.inbound import PAGE_SIZE
from postroom.web.sanitise import EMPTY_BODY, sanitised
from tests.conftest import make_settings
from tests.studiokit import log_in, mortgage_records, studio_client
from tests.test_api_inbound import mail, receive
from tests.test_studio import MORTGAGE, account_form

IMAP_SECRET = "imap-Pa55-never-shown-QUUX"
# A case type without required data: a case can be opened from any mail.
NOTE = "MyOrg-Notes-Work-Note"
NOTE_TYPE = {"class": NOTE, "class_group": "MyOrg-Notes-Work", "label": "Note", "id_prefix": "N-"}


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as opened:
        records = mortgage_records()
        records["case_types"].append(NOTE_TYPE)
        opened.apply(records)
        yield opened


@pytest.fixture
def client(pr: Postroom, tmp_path: Path) -> Iterator[TestClient]:
    with studio_client(pr, inbox_dir=tmp_path / "inbox") as c:
        yield c


def _error(html: str) -> str:
    start = html.find('id="form-error"')
    assert start >= 0, "the page shows no form error"
    return html[start : html.find("</div>", start)]


# --- The account form's inbound settings ------------------------------------------------


def test_inbound_settings_are_saved_shown_and_the_password_stays_write_only(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    made = client.post(
        "/accounts",
        data=account_form(
            csrf,
            inbound_protocol="imap",
            inbound_host="imap.example.com",
            inbound_security="starttls",
            inbound_user_id="replies@example.com",
            inbound_password=IMAP_SECRET,
            inbound_folder="Replies",
            inbound_after="move",
            inbound_move_to="Archive",
            inbound_poll_seconds="45",
            inbound_max_message_bytes="1048576",
            reply_to_plus_addressing="on",
        ),
        follow_redirects=False,
    )
    assert made.status_code == 303, _error(made.text)
    account = pr.account("Default")
    assert account.reply_to_plus_addressing
    inbound = account.inbound
    assert inbound is not None
    assert (inbound.protocol, inbound.host, inbound.port) == (
        InboundProtocol.IMAP,
        "imap.example.com",
        143,  # the default port of starttls
    )
    assert (inbound.folder, inbound.after, inbound.move_to) == (
        "Replies",
        AfterIngest.MOVE,
        "Archive",
    )
    assert inbound.poll_seconds == 45
    assert inbound.max_message_bytes == 1048576
    assert inbound.password is not None
    assert inbound.password.get_secret_value() == IMAP_SECRET

    shown = client.get("/accounts/Default").text
    assert IMAP_SECRET not in shown
    summary = shown[shown.index('id="inbound-summary"') :]
    assert "imap.example.com:143 starttls" in summary
    assert "replies@example.com" in summary
    assert "moved to Archive" in summary
    assert "password set" in summary
    assert "Reply-To carries the case id" in summary
    assert 'name="inbound_password" type="password" value=""' in shown
    assert 'name="reply_to_plus_addressing" type="checkbox" checked' in shown

    # Saved again with the password field empty: the stored one is kept.
    again = client.post(
        "/accounts/Default",
        data=account_form(
            csrf,
            inbound_protocol="imap",
            inbound_host="imap2.example.com",
            inbound_security="starttls",
            inbound_port="143",
            inbound_folder="Replies",
        ),
        follow_redirects=False,
    )
    assert again.status_code == 303, _error(again.text)
    kept = pr.account("Default").inbound
    assert kept is not None
    assert kept.host == "imap2.example.com"
    assert kept.password is not None
    assert kept.password.get_secret_value() == IMAP_SECRET
    assert not pr.account("Default").reply_to_plus_addressing  # the box was not ticked


def test_removing_the_inbound_password_needs_another_credential(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    fields = {"inbound_protocol": "imap", "inbound_host": "imap.example.com"}
    client.post("/accounts", data=account_form(csrf, **fields, inbound_password=IMAP_SECRET))
    refused = client.post(
        "/accounts/Default", data=account_form(csrf, **fields, clear_inbound_password="on")
    )
    assert refused.status_code == 422
    assert "IMAP needs a password or an auth_profile" in _error(refused.text)
    assert IMAP_SECRET not in refused.text
    # What was typed is shown again.
    assert 'value="imap.example.com"' in refused.text
    stored = pr.account("Default").inbound
    assert stored is not None
    assert stored.password is not None


def test_inbound_settings_are_validated_like_apply(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    cases = [
        ({"inbound_protocol": "imap", "inbound_password": "x"}, "inbound.host: is required"),
        (
            {"inbound_protocol": "imap", "inbound_host": "h.example", "inbound_password": "x",
             "inbound_after": "move"},
            "inbound.move_to: is required for after: move",
        ),
        (
            {"inbound_protocol": "imap", "inbound_host": "h.example", "inbound_password": "x",
             "inbound_poll_seconds": "0"},
            "inbound.poll_seconds",
        ),
        (
            {"inbound_protocol": "imap", "inbound_host": "h.example", "inbound_password": "x",
             "inbound_security": "none"},
            "allow_insecure_auth",
        ),
        ({"inbound_protocol": "graph"}, "Graph inbound needs an auth_profile"),
    ]  # fmt: skip
    for fields, message in cases:
        refused = client.post("/accounts", data=account_form(csrf, **fields))
        assert refused.status_code == 422, fields
        assert message in _error(refused.text), (fields, _error(refused.text))
    assert pr.accounts() == []


def test_an_account_without_inbound_fields_has_no_inbound_side(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    client.post(
        "/accounts",
        data=account_form(
            csrf, inbound_protocol="imap", inbound_host="h.example", inbound_password="x"
        ),
    )
    assert pr.account("Default").inbound is not None
    # Choosing "(no inbound mail)" removes the inbound side, password and all.
    done = client.post("/accounts/Default", data=account_form(csrf), follow_redirects=False)
    assert done.status_code == 303
    assert pr.account("Default").inbound is None
    assert 'id="inbound-summary"' not in client.get("/accounts/Default").text


# --- Received mail: the triage list, a message, its actions -----------------------------

HOSTILE_NAME = "{{ 7*7 }} <img src=x onerror=alert(1)>"
HOSTILE_SUBJECT = "<script>alert(1)</script> {{ 7*7 }}"
CASE_DATA = {"applicant": "Jo", "amount": 1000, "customer_email": "jo@example.net"}


def _notice(client: TestClient, answer: Response) -> tuple[str, str]:
    """Follow a form's redirect: the notice's level and text on the page it leads to."""
    assert answer.status_code == 303, answer.text[:500]
    shown = client.get(answer.headers["location"]).text
    found = re.search(r'<p class="notice (\w+)" role="\w+">([^<]*)</p>', shown)
    assert found is not None, "the page shows no notice"
    return found.group(1), html.unescape(found.group(2))


def test_hostile_headers_are_shown_escaped_everywhere(client: TestClient, pr: Postroom) -> None:
    raw = mail(
        subject=HOSTILE_SUBJECT,
        sender=f'"{HOSTILE_NAME}" <mallory@stranger.example>',
        text="{{ 7*7 }} <script>alert(2)</script>\n",
        html="<p onclick='steal()'>Hi</p><script>alert(3)</script><img src=x onerror=alert(4)>",
    )
    message_id = receive(pr, raw)
    log_in(client)
    for path in ("/inbound", f"/inbound/{message_id}", "/inbound?q=mallory"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
        assert "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        # Header values are data, never templates: shown as written, not evaluated.
        assert "{{ 7*7 }}" in page.text, path
        assert ">49<" not in page.text, path
        assert " 49 " not in page.text, path
    # The HTML is framed from its own URL, sanitised, under the body policy.
    shown = client.get(f"/inbound/{message_id}").text
    assert f'src="/inbound/{message_id}/body"' in shown
    assert re.search(r"<iframe [^>]*sandbox", shown)
    body = client.get(f"/inbound/{message_id}/body")
    assert body.headers["content-security-policy"] == BODY_POLICY
    assert "<p>Hi</p>" in body.text
    for dangerous in ("<script", "onclick", "onerror", "alert(3)"):
        assert dangerous not in body.text, dangerous
    raw_answer = client.get(f"/inbound/{message_id}/raw")
    assert raw_answer.content == raw
    assert raw_answer.headers["content-disposition"].startswith("attachment;")
    assert raw_answer.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_triage_lists_unmatched_first_filters_and_searches(
    client: TestClient, pr: Postroom
) -> None:
    case = pr.cases.create(MORTGAGE, data=CASE_DATA)
    first = receive(pr, mail(subject="Early question", sender="Ann <ann@example.net>"))
    pr.attach_received(first, case.id)  # matched now: below the waiting ones
    waiting = receive(pr, mail(subject="Later question", sender="Bob <bob@example.net>"))
    log_in(client)
    page = client.get("/inbound").text
    assert page.index(f'data-id="{waiting}"') < page.index(f'data-id="{first}"')
    assert "1 awaiting triage" in page
    assert f'href="/inbound/{waiting}"' in page

    def ids(query: str) -> set[int]:
        listed = client.get("/inbound" + query).text
        return {int(i) for i in re.findall(r'<tr data-id="(\d+)"', listed)}

    assert ids("?status=unmatched") == {waiting}
    assert ids("?status=matched") == {first}
    assert ids("?q=BOB") == {waiting}
    assert ids("?q=early") == {first}
    assert ids(f"?case={case.id}") == {first}
    assert ids("?status=bogus") == {first, waiting}  # an unknown status filters nothing


def test_triage_pages(client: TestClient, pr: Postroom) -> None:
    for n in range(PAGE_SIZE + 2):
        receive(pr, mail(subject=f"Question {n}"))
    log_in(client)
    first = client.get("/inbound").text
    assert "page 1 of 2" in first
    assert len(re.findall(r'<tr data-id="', first)) == PAGE_SIZE
    second = client.get("/inbound?page=2").text
    assert len(re.findall(r'<tr data-id="', second)) == 2


def test_attach_create_and_dismiss_through_the_forms(client: TestClient, pr: Postroom) -> None:
    case = pr.cases.create(MORTGAGE, data=CASE_DATA)
    to_attach = receive(pr, mail(subject="About my case"))
    to_open = receive(pr, mail(subject="New request", sender="Cy <cy@example.net>"))
    to_dismiss = receive(pr, mail(subject="Newsletter signup"))
    csrf = log_in(client)
    shown = client.get(f"/inbound/{to_attach}").text
    for action in ("attach", "case", "dismiss"):
        assert f'action="/inbound/{to_attach}/{action}"' in shown

    # Refusals come back as error notices, and nothing changes.
    level, text = _notice(
        client,
        client.post(
            f"/inbound/{to_attach}/attach",
            data={"csrf_token": csrf, "case_id": "M-404"},
            follow_redirects=False,
        ),
    )
    assert level == "error"
    assert "M-404" in text
    assert pr.received_message(to_attach).status == "unmatched"

    level, text = _notice(
        client,
        client.post(
            f"/inbound/{to_attach}/attach",
            data={"csrf_token": csrf, "case_id": case.id},
            follow_redirects=False,
        ),
    )
    assert (level, text) == ("success", f"Received #{to_attach} attached to case {case.id}.")
    assert pr.received_message(to_attach).case_id == case.id
    after = client.get(f"/inbound/{to_attach}").text
    assert f'action="/inbound/{to_attach}/attach"' not in after  # matched: no more triage
    assert f'href="/cases/{case.id}"' in after

    opened = client.post(
        f"/inbound/{to_open}/case",
        data={"csrf_token": csrf, "class_name": NOTE},
        follow_redirects=False,
    )
    assert opened.status_code == 303
    new_case = pr.received_message(to_open).case_id
    assert new_case is not None
    assert opened.headers["location"] == f"/cases/{new_case}"

    level, _ = _notice(
        client,
        client.post(
            f"/inbound/{to_dismiss}/dismiss", data={"csrf_token": csrf}, follow_redirects=False
        ),
    )
    assert level == "success"
    assert pr.received_message(to_dismiss).status == "dismissed"
    level, text = _notice(
        client,
        client.post(
            f"/inbound/{to_dismiss}/dismiss", data={"csrf_token": csrf}, follow_redirects=False
        ),
    )
    assert level == "error"
    assert "dismissed" in text


def test_triage_forms_need_the_csrf_token(client: TestClient, pr: Postroom) -> None:
    case = pr.cases.create(MORTGAGE, data=CASE_DATA)
    message_id = receive(pr, mail())
    log_in(client)
    for action, data in (
        ("attach", {"case_id": case.id}),
        ("case", {"class_name": NOTE}),
        ("dismiss", {}),
    ):
        for token in (None, "wrong-token"):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            got = client.post(f"/inbound/{message_id}/{action}", data=body, follow_redirects=False)
            assert got.status_code == 403, (action, token)
    assert pr.received_message(message_id).status == "unmatched"


def test_inbound_pages_need_a_session_and_unknown_ids_are_404(
    client: TestClient, pr: Postroom
) -> None:
    message_id = receive(pr, mail())
    for path in ("/inbound", f"/inbound/{message_id}", f"/inbound/{message_id}/raw"):
        got = client.get(path, follow_redirects=False)
        assert got.status_code == 303
        assert got.headers["location"].startswith("/login")
    log_in(client)
    for path in ("/inbound/999", "/inbound/999/raw", "/inbound/999/body", "/inbound/abc"):
        assert client.get(path).status_code == 404, path


def test_the_case_page_shows_the_conversation_in_time_order(
    client: TestClient, pr: Postroom
) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.x"}]})
    case = pr.cases.create(MORTGAGE, data=CASE_DATA)
    sent_id = pr.send(
        to=["jo@example.net"], subject="Your documents", body="<p>Please send them.</p>",
        case_id=case.id,
    )  # fmt: skip
    sent = pr.outbox_entry(sent_id)
    reply = receive(
        pr,
        mail(
            subject=f"Re: Your documents {HOSTILE_SUBJECT}",
            sender=f'"{HOSTILE_NAME}" <jo@example.net>',
            text="Here they are.\n\nOn Monday, Acme wrote:\n> Please send them.\n",
            in_reply_to=sent.message_id,
        ),
    )
    assert pr.received_message(reply).case_id == case.id
    log_in(client)
    page = client.get(f"/cases/{case.id}").text
    timeline = page[page.index('id="conversation"') :]
    timeline = timeline[: timeline.index("</ol>")]
    # Every email of the case, oldest first, each linking where it can be read whole.
    assert timeline.index(f'href="/outbox/{sent_id}"') < timeline.index(f'href="/inbound/{reply}"')
    assert f"received-{reply}.eml" in timeline
    assert "Here they are." in timeline
    assert "<details>" in timeline
    assert "Quoted history" in timeline
    assert "&lt;script&gt;" in timeline
    assert "<script>" not in timeline


def test_mail_that_does_not_parse_or_was_too_large_still_has_a_page(
    client: TestClient, pr: Postroom
) -> None:
    broken = (
        b"From: =?bogus-charset?q?Ma=FFory?= <m@stranger.example>\r\n"
        b"Subject: \xff\xfe broken \xc3\r\n"
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n'
        b"--elsewhere\r\nContent-Type: text/html; charset=x-unknown\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n"
    )
    broken_id = receive(pr, broken)
    big = FetchedMessage(key="big-1", size=30 * 1024 * 1024, raw=None)
    big_id = pr.ingestor.ingest(MailboxRef("Default", "INBOX"), big, validity="1").id
    log_in(client)
    page = client.get(f"/inbound/{broken_id}")
    assert page.status_code == 200
    assert "What did not parse" in page.text
    assert client.get(f"/inbound/{broken_id}/body").status_code == 200
    shown = client.get(f"/inbound/{big_id}")
    assert shown.status_code == 200
    assert "were not kept (over the size limit)" in shown.text
    assert "Download .eml" not in shown.text
    assert client.get(f"/inbound/{big_id}/body").text == EMPTY_BODY
    assert client.get(f"/inbound/{big_id}/raw").status_code == 409
    assert client.get("/inbound").status_code == 200


def test_received_html_keeps_its_look_and_loses_what_could_act() -> None:
    cleaned = sanitised(
        '<div style="color: red; position: fixed; background: url(https://t.example/p)">'
        '<a href="javascript:alert(1)">j</a><a href="https://example.org/x">link</a>'
        '<img src="https://t.example/pixel.gif"><img src="data:image/png;base64,AA==">'
        "<form action=/logout><button>go</button></form><iframe src=/></iframe>"
        "<style>body{display:none}</style><object data=x></object>"
        '<svg onload="alert(1)"></svg><table width="100%"><tr><td valign="top">cell</td></tr>'
        "</table></div>"
    )
    assert 'style="color:red"' in cleaned
    for gone in ("position", "url(", "javascript:", "<form", "<button", "<iframe", "<style",
                 "<object", "<svg", "onload"):  # fmt: skip
        assert gone not in cleaned, gone
    # Links keep their address to be read, but open a window the frame's sandbox refuses.
    assert '<a href="https://example.org/x" target="_blank" rel="noopener noreferrer">' in cleaned
    assert 'src="data:image/png;base64,AA=="' in cleaned
    assert '<td valign="top">cell</td>' in cleaned


def test_the_triage_search_is_the_same_on_sqlite_and_postgresql(postroom: Postroom) -> None:
    postroom.apply({"case_types": [NOTE_TYPE]})
    ann = receive(postroom, mail(subject="Rate 50% off?", sender="Ann O'Neil <ann@example.net>"))
    bob = receive(postroom, mail(subject="a_b question", sender="Bob <BOB@Example.NET>"))
    done = receive(postroom, mail(subject="Thanks", sender="Cy <cy@example.net>"))
    postroom.case_from_received(done, NOTE)

    def found(**query: Any) -> list[int]:
        with postroom.engine.connect() as conn:
            return [m.id for m in search_received(conn, InboundQuery(**query)).items]

    # Awaiting messages first, the newest first among them.
    assert found() == [bob, ann, done]
    assert found(text="o'neil") == [ann]
    assert found(text="bob@example") == [bob]
    assert found(text="50%") == [ann]  # the user's % and _ are no wildcards
    assert found(text="a_b") == [bob]
    assert found(text="%") == [ann]
    message_id = postroom.received_message(bob).message_id
    assert message_id is not None
    assert found(text=f"<{message_id}>") == [bob]
    assert found(status=InboundStatus.NEW_CASE) == [done]
    assert found(account="Nobody") == []
    page = search_received_page(postroom, page=2, page_size=2)
    assert (page.total, page.pages, [m.id for m in page.items]) == (3, 2, [done])


def search_received_page(pr: Postroom, *, page: int, page_size: int) -> Page[ReceivedMessage]:
    with pr.engine.connect() as conn:
        return search_received(conn, InboundQuery(page=page, page_size=page_size))
