"""What a newcomer meets first in the API: the docs page, clear errors, text sent as written.

Real parts throughout: uvicorn on a loopback port, an aiosmtpd server receiving the mail,
Chromium rendering the documentation page, Typer's runner for the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, sync_playwright
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app as cli_app
from postroom.outbox import OutboxStatus
from tests.apikit import client, http, issue_tokens, mounted, serve
from tests.conftest import IN_CI, TEST_KEY, make_settings
from tests.fakes import ServerInfo, smtp_server

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parent.parent / "test-artifacts" / "screenshots"
LITERAL_SUBJECT = "Total {{ 7*7 }} {% stray"
LITERAL_BODY = "<p>Your code: {{ 7*7 }} and {% if %} &amp; {#</p>"


def records(port: int) -> dict[str, Any]:
    """A Default account and a class group's account on the test server; one case type."""
    server = {"host": "127.0.0.1", "port": port, "security": "none"}
    return {
        "accounts": [
            {"name": "Default", "address": "default@example.com", **server},
            {"name": "MyOrg-Claims-Work", "address": "claims@example.com", **server},
        ],
        "case_types": [
            {"class": "MyOrg-Claims-Work-Claim", "class_group": "MyOrg-Claims-Work",
             "id_prefix": "CL-"},
            {"class": "Other-Kind", "class_group": "Other", "id_prefix": "O-"},
        ],
    }  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Postroom, ServerInfo]]:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply(records(srv.port))
        yield pr, srv


def delivered(pr: Postroom, srv: ServerInfo, outbox_id: int) -> EmailMessage:
    """Deliver ``outbox_id`` through the sender agent and return what the server received."""
    asyncio.run(pr.agent().run(until_idle=True))
    assert pr.outbox_entry(outbox_id).status is OutboxStatus.SENT
    [received] = srv.sink.received
    return received.message


def text_parts(message: EmailMessage) -> dict[str, str]:
    parts = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts[part.get_content_type()] = str(part.get_content())
    return parts


# --- the documentation ------------------------------------------------------------------


def test_the_docs_page_and_the_index_need_no_token(sqlite_postroom: Postroom) -> None:
    with serve(mounted(sqlite_postroom)) as base, http(base) as c:
        index = c.get("/api/v1/")
        assert index.status_code == 200, index.text
        assert index.json()["docs"] == "/api/v1/docs"
        assert index.json()["openapi"] == "/api/v1/openapi.json"
        page = c.get("/api/v1/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "<script>" not in page.text  # no inline script: every script is a file
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
            assert f"/api/v1/docs/{asset}" in page.text
            got = c.get(f"/api/v1/docs/{asset}")
            assert got.status_code == 200, asset
            assert got.headers["x-content-type-options"] == "nosniff"
        assert c.get("/api/v1/docs/../auth.py").status_code in (401, 404)
        assert c.get("/api/v1/docs/nothing.js").status_code == 404
        unauthorised = c.get("/api/v1/emails")
        assert unauthorised.status_code == 401
        assert "/api/v1/docs" in unauthorised.json()["detail"]


@pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI, reason="needs Debian's chromium")
def test_the_docs_page_renders_the_operations_and_authorizes_in_chromium(
    sqlite_postroom: Postroom,
) -> None:
    pr = sqlite_postroom
    admin = issue_tokens(pr).admin["Authorization"].removeprefix("Bearer ")
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    with serve(mounted(pr)) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{base}/api/v1/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() > 30
            assert page.locator(".opblock-post .opblock-summary-path", has_text="/emails").count()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "api-docs.png"))  # before a token is typed in
            # Authorize with a token, then try an admin route from the page.
            page.click("button.authorize")
            page.fill("#auth-bearer-value", admin)
            page.click(".auth-btn-wrapper button.authorize")
            page.click(".auth-btn-wrapper button.btn-done")
            agents = page.locator("#operations-agents-list_agents_agents_get")
            agents.locator(".opblock-summary").click()
            agents.locator("button.try-out__btn").click()
            agents.locator("button.execute").click()
            status = agents.locator(".live-responses-table tr.response .response-col_status")
            status.wait_for(timeout=30_000)
            assert status.inner_text().strip() == "200"
        finally:
            browser.close()
    assert problems == []


def test_request_bodies_carry_examples_and_deprecated_names_are_marked(
    sqlite_postroom: Postroom,
) -> None:
    with client(sqlite_postroom) as c:
        schema = c.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("CaseCreate", "EmailCreate", "EmailBatchCreate", "StatusChange"):
        assert components[name].get("examples"), name
    assert components["CaseCreate"]["properties"]["case_type"]["deprecated"] is True
    assert "class_name" in components["CaseCreate"]["required"]
    assert components["EmailCreate"]["properties"]["template"]["default"] is False
    queued = components["QueuedEmails"]["properties"]
    assert {"account", "account_reason", "warnings"} <= queued.keys()


# --- malformed and invalid requests -----------------------------------------------------


def test_malformed_json_is_400_with_the_position(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    json_type = {"Content-Type": "application/json"}
    with client(sqlite_postroom) as c:
        bad = c.post(
            "/api/v1/emails", content=b'{"to": ["a@example.com"],\n "subject": oops}',
            headers=tokens.send | json_type,
        )  # fmt: skip
        assert bad.status_code == 400, bad.text
        assert bad.headers["content-type"] == "application/problem+json"
        problem = bad.json()
        assert problem["type"].endswith("/malformed-json")
        assert "line 2, column 13" in problem["detail"]
        assert [e["field"] for e in problem["errors"]] == ["body"]
        # Well-formed JSON that does not validate stays 422.
        wrong = c.post("/api/v1/emails", json={"to": "nobody"}, headers=tokens.send)
        assert wrong.status_code == 422
        assert wrong.json()["errors"]


def test_each_422_names_its_field(world: tuple[Postroom, ServerInfo]) -> None:
    pr, _ = world
    send = issue_tokens(pr).send

    def fields(body: dict[str, Any], path: str = "/api/v1/emails") -> list[str]:
        with client(pr) as c:
            answer = c.post(path, json=body, headers=send)
        assert answer.status_code == 422, answer.text
        return [e["field"] for e in answer.json()["errors"]]

    ok = {"to": ["a@example.com"], "subject": "s", "body": "b"}
    assert fields(ok | {"to": ["a@example.com", "not an address"]}) == ["body.to.1"]
    assert fields(ok | {"cc": ["bad@"], "bcc": ["x@example.com", "y@x"]}) == [
        "body.cc.0",
        "body.bcc.1",
    ]
    assert fields(ok | {"subject": " "}) == ["body.subject"]
    assert fields(ok | {"subject": "Hi\r\nBcc: evil@example.net"}) == ["body.subject"]
    assert fields(ok | {"class_name": "A\nB"}) == ["body.class_name"]
    assert fields(ok | {"expires_at": "2001-01-01T00:00:00Z"}) == ["body.expires_at"]
    assert fields(ok | {"body": "{% if %}", "template": True}) == ["body.body"]
    assert fields(ok | {"subject": "{{ nope }}", "template": True}) == ["body.subject"]
    assert fields({"to": ["a@example.com"], "correspondence": "Nope"}) == ["body.correspondence"]
    assert fields({"class_name": "No-Such-Type"}, "/api/v1/cases") == ["body.class_name"]
    ghost = {"class_name": "Other-Kind", "operator": "ghost"}
    assert fields(ghost, "/api/v1/cases") == ["body.operator"]
    batch = {"emails": [ok, ok | {"to": ["a@example.com", "b@"]}]}
    assert fields(batch, "/api/v1/emails/batch") == ["body.emails.1.to.1"]
    batch = {"emails": [ok, ok | {"subject": "a\rb"}]}
    assert fields(batch, "/api/v1/emails/batch") == ["body.emails.1.subject"]
    assert pr.outbox() == []


def test_a_missing_account_names_the_class(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr, client(pr) as c:
        body = {"to": ["a@example.com"], "subject": "s", "body": "b", "class_name": "A-B"}
        answer = c.post("/api/v1/emails", json=body, headers=issue_tokens(pr).send)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["body.class_name"]


# --- ad-hoc text as written, templates on request ---------------------------------------


def test_an_ad_hoc_email_is_delivered_as_written(world: tuple[Postroom, ServerInfo]) -> None:
    pr, srv = world
    body = {"to": ["reader@example.com"], "subject": LITERAL_SUBJECT, "body": LITERAL_BODY}
    with serve(mounted(pr)) as base, http(base) as c:
        answer = c.post("/api/v1/emails", json=body, headers=issue_tokens(pr).send)
    assert answer.status_code == 201, answer.text
    message = delivered(pr, srv, answer.json()["ids"][0])
    assert message["Subject"] == LITERAL_SUBJECT
    parts = text_parts(message)
    assert LITERAL_BODY in parts["text/html"]
    assert "Your code: {{ 7*7 }} and {% if %} & {#" in parts["text/plain"]


def test_template_true_renders_subject_and_body(world: tuple[Postroom, ServerInfo]) -> None:
    pr, srv = world
    body = {
        "to": ["reader@example.com"],
        "subject": "Total {{ 7*7 }}",
        "body": "<p>From {{ account.name }}: {{ '<b>' }}</p>",
        "template": True,
    }
    with client(pr) as c:
        answer = c.post("/api/v1/emails", json=body, headers=issue_tokens(pr).send)
    assert answer.status_code == 201, answer.text
    message = delivered(pr, srv, answer.json()["ids"][0])
    assert message["Subject"] == "Total 49"
    html = text_parts(message)["text/html"]
    assert "<p>From Default: &lt;b&gt;</p>" in html  # values are escaped into the HTML


def test_python_send_is_as_written_unless_template(world: tuple[Postroom, ServerInfo]) -> None:
    pr, _ = world
    plain = pr.send(to=["a@example.com"], subject=LITERAL_SUBJECT, body="b")
    rendered = pr.send(to=["a@example.com"], subject="{{ 6*7 }}", body="b", template=True)
    assert pr.outbox_entry(plain).subject == LITERAL_SUBJECT
    assert pr.outbox_entry(rendered).subject == "42"


def test_the_cli_sends_as_written_and_renders_with_template(
    world: tuple[Postroom, ServerInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    pr, _ = world
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    db = ["--database-url", str(pr.settings.database_url)]
    runner = CliRunner()
    common = ["send", "--to", "a@example.com", "--body", "<p>b</p>"]
    plain = runner.invoke(cli_app, [*db, *common, "--subject", LITERAL_SUBJECT])
    assert plain.exit_code == 0, plain.output
    assert LITERAL_SUBJECT in plain.output
    assert "account Default" in plain.output
    rendered = runner.invoke(
        cli_app,
        [*db, *common, "--subject", "{{ 6*7 }} for {{ case.class_name }}", "--template",
         "--class", "MyOrg-Claims-Work-Claim", "--json"],
    )  # fmt: skip
    assert rendered.exit_code == 0, rendered.output
    assert '"account": "MyOrg-Claims-Work"' in rendered.output
    [entry] = [e for e in pr.outbox() if e.subject.startswith("42")]
    assert entry.subject == "42 for MyOrg-Claims-Work-Claim"
    typo = runner.invoke(cli_app, [*db, *common, "--subject", "s", "--class", "MyOrg-Clams"])
    assert typo.exit_code == 0, typo.output
    assert "account Default" in typo.output
    assert "warning: class MyOrg-Clams is no case type" in typo.output
    broken = runner.invoke(cli_app, [*db, *common, "--subject", "{% if", "--template"])
    assert broken.exit_code != 0
    assert "subject:" in broken.output
    assert "Traceback" not in broken.output


# --- naming and the account chosen ------------------------------------------------------


def test_case_type_is_a_deprecated_alias_of_class_name(world: tuple[Postroom, ServerInfo]) -> None:
    pr, _ = world
    send = issue_tokens(pr).send
    with client(pr) as c:
        new = c.post("/api/v1/cases", json={"class_name": "Other-Kind"}, headers=send)
        assert new.status_code == 201, new.text
        assert "Deprecation" not in new.headers
        assert new.json()["class_name"] == new.json()["case_type"] == "Other-Kind"
        old = c.post("/api/v1/cases", json={"case_type": "Other-Kind"}, headers=send)
        assert old.status_code == 201, old.text
        assert old.headers["Deprecation"] == "true"
        assert old.json()["class_name"] == "Other-Kind"
        both = {"case_type": "Other-Kind", "class_name": "MyOrg-Claims-Work-Claim"}
        assert c.post("/api/v1/cases", json=both, headers=send).status_code == 422
        shown = c.get(f"/api/v1/cases/{new.json()['id']}", headers=send)
        assert shown.json()["class_name"] == "Other-Kind"


def test_the_answer_names_the_account_and_why(world: tuple[Postroom, ServerInfo]) -> None:
    pr, _ = world
    send = issue_tokens(pr).send
    mail = {"to": ["a@example.com"], "subject": "s", "body": "b"}
    with client(pr) as c:
        claim = c.post(
            "/api/v1/emails", json=mail | {"class_name": "MyOrg-Claims-Work-Claim"}, headers=send
        ).json()
        assert claim["account"] == "MyOrg-Claims-Work"
        assert "MyOrg-Claims-Work-Claim" in claim["account_reason"]
        assert "MyOrg-Claims-Work" in claim["account_reason"]
        assert claim["warnings"] == []
        typo = c.post("/api/v1/emails", json=mail | {"class_name": "MyOrg-Clams"}, headers=send)
        assert typo.status_code == 201
        assert typo.json()["account"] == "Default"
        [warning] = typo.json()["warnings"]
        assert "MyOrg-Clams" in warning
        assert "no case type" in warning
        bare = c.post("/api/v1/emails", json=mail, headers=send).json()
        assert bare["account"] == "Default"
        assert bare["warnings"] == []
        assert "Default" in bare["account_reason"]
        many = {"class_name": "MyOrg-Claims-Work-Claim", "emails": [mail, mail]}
        batch = c.post("/api/v1/emails/batch", json=many, headers=send).json()
        assert len(batch["ids"]) == 2
        assert batch["account"] == "MyOrg-Claims-Work"
        assert "MyOrg-Claims-Work-Claim" in batch["account_reason"]
        # A replay answers the same, account and reason included.
        key = send | {"Idempotency-Key": "k-1"}
        first = c.post("/api/v1/emails", json=mail | {"class_name": "MyOrg-Clams"}, headers=key)
        again = c.post("/api/v1/emails", json=mail | {"class_name": "MyOrg-Clams"}, headers=key)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() | {"emails": []} == first.json() | {"emails": []}


def test_a_case_uses_its_class_group_account(world: tuple[Postroom, ServerInfo]) -> None:
    pr, _ = world
    case = pr.cases.create("MyOrg-Claims-Work-Claim")
    queued = pr.queue_email(to=["a@example.com"], subject="s", body="b", case_id=case.id)
    assert queued.account == "MyOrg-Claims-Work"
    assert queued.warnings == ()
