"""Inbound settings as a new user meets them: located one-line errors, no line breaks in
what reaches an IMAP command, the secret-in-file warning, and received HTML sanitised
where the REST API and the ``.eml`` viewer show it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from tests.apikit import MINIMAL_RECORDS, Tokens, client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import log_in, mortgage_records, studio_client
from tests.test_api_inbound import mail, receive
from tests.test_studio import account_form

SECRET = "s3cret-Never-Shown"
INJECTED = "bob\r\nA2 SELECT INBOX"
HOSTILE_HTML = (
    '<p onclick="steal()">Hello<script>alert(1)</script>'
    '<img src="https://tracker.example/open.gif" onerror="alert(2)">'
    '<a href="javascript:alert(3)">click</a>'
    '<a href="https://ok.example/">fine</a></p>'
)


def _account(**inbound: Any) -> dict[str, Any]:
    return {
        "name": "Desk",
        "address": "desk@example.com",
        "host": "smtp.example.com",
        "password": "${DESK_PW:-x}",
        "inbound": {"host": "imap.example.com", "password": "${DESK_PW:-x}", **inbound},
    }


def _apply(tmp_path: Path, text: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    (tmp_path / "r.yaml").write_text(text)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    env = {"POSTROOM_SECRET_KEY": TEST_KEY}
    runner = CliRunner()
    assert runner.invoke(app, ["-d", url, "db", "upgrade"], env=env).exit_code == 0
    return runner.invoke(app, ["-d", url, "apply", str(tmp_path / "r.yaml")], env=env)


@pytest.mark.parametrize(
    ("inbound_yaml", "where"),
    [
        ('user_id: "bob\\r\\nA2 SELECT INBOX"', "inbound.user_id"),
        (f'password: "{SECRET}\\r\\nA2 SELECT INBOX"', "inbound.password"),
    ],
)
def test_a_line_break_in_the_imap_login_is_refused_by_apply(
    tmp_path: Path, inbound_yaml: str, where: str
) -> None:
    result = _apply(
        tmp_path,
        f"""
accounts:
  - name: Desk
    address: desk@example.com
    host: smtp.example.com
    inbound:
      host: imap.example.com
      {inbound_yaml}
""",
    )
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert f"accounts[0] (Desk): {where}: " in line
    assert "control character U+000D" in line
    assert SECRET not in line
    assert "Traceback" not in result.output


def test_the_account_user_id_that_the_imap_login_falls_back_to_is_checked_too(
    sqlite_postroom: Postroom,
) -> None:
    account = {**_account(), "user_id": INJECTED}
    with pytest.raises(Exception, match=r"accounts\[0\] \(Desk\): user_id: user_id contains"):
        sqlite_postroom.apply({"accounts": [account]})
    assert sqlite_postroom.accounts() == []


@pytest.mark.parametrize(
    ("inbound", "expected"),
    [
        ({"host": None}, "inbound.host: is required for IMAP"),
        ({"password": None}, "inbound: IMAP needs a password or an auth_profile (XOAUTH2)"),
        ({"after": "move"}, "inbound.move_to: is required for after: move"),
        ({"move_to": "Done"}, "inbound.move_to: is only for after: move"),
        ({"after": "move", "move_to": "INBOX"}, "inbound.move_to: must be another folder"),
        ({"folder": " "}, "inbound.folder: must be 1-255 characters"),
        ({"protocol": "graph", "auth_profile": "P"}, "inbound.password: Graph reads with"),
    ],
)
def test_inbound_errors_are_located_like_the_other_sections(
    sqlite_postroom: Postroom, inbound: dict[str, Any], expected: str
) -> None:
    with pytest.raises(Exception) as refused:
        sqlite_postroom.apply({"accounts": [_account(**inbound)]})
    message = str(refused.value)
    assert message.startswith("accounts[0] (Desk): "), message
    assert expected in message, message
    assert "Value error" not in message
    assert "inbound: inbound" not in message


def test_nested_errors_elsewhere_lose_pydantics_prefix_too(sqlite_postroom: Postroom) -> None:
    account = {**_account(), "dkim": {"domain": "not a name", "selector": "s", "private_key": "x"}}
    with pytest.raises(Exception) as refused:
        sqlite_postroom.apply({"accounts": [account]})
    assert "dkim.domain: 'not a name' is not a DNS name" in str(refused.value)
    assert "Value error" not in str(refused.value)


def test_an_inline_inbound_password_warns_like_the_outbound_one(
    sqlite_postroom: Postroom,
) -> None:
    account = _account(password=SECRET)
    report = sqlite_postroom.apply({"accounts": [account]})
    [warning] = [w for w in report.warnings if "prefer ${ENV_VAR}" in w]
    assert warning.startswith("accounts[0] (Desk): the inbound password is written in the file")
    assert SECRET not in warning
    again = sqlite_postroom.apply({"accounts": [_account()]})
    assert not [w for w in again.warnings if "prefer ${ENV_VAR}" in w]


# --- The REST API and the Studio ---------------------------------------------------------


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


def test_the_api_refuses_a_line_break_in_the_inbound_login_naming_the_field(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    body = {
        "name": "Desk",
        "address": "desk@example.com",
        "host": "smtp.example.com",
        "inbound": {"host": "imap.example.com", "user_id": INJECTED, "password": SECRET},
    }
    refused = api.post("/api/v1/accounts", json=body, headers=tokens.admin)
    assert refused.status_code == 422, refused.text
    fields = [e["field"] for e in refused.json()["errors"]]
    assert any(f.endswith("inbound.user_id") for f in fields), refused.text
    assert SECRET not in refused.text
    body["inbound"] = {"host": "imap.example.com", "password": SECRET + "\nA2 LOGOUT"}
    refused = api.post("/api/v1/accounts", json=body, headers=tokens.admin)
    assert refused.status_code == 422, refused.text
    assert any(e["field"].endswith("inbound.password") for e in refused.json()["errors"])
    assert SECRET not in refused.text
    assert [a.name for a in pr.accounts()] == ["Default"]


def test_the_studio_refuses_a_line_break_in_the_inbound_login_naming_the_field(
    tmp_path: Path,
) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr:
        pr.apply(mortgage_records())
        with studio_client(pr, inbox_dir=tmp_path / "inbox") as studio:
            csrf = log_in(studio)
            refused = studio.post(
                "/accounts",
                data=account_form(
                    csrf,
                    inbound_protocol="imap",
                    inbound_host="imap.example.com",
                    inbound_user_id=INJECTED,
                    inbound_password=SECRET,
                ),
            )
        assert refused.status_code == 422
        assert "inbound.user_id: user_id contains control character U+000D" in refused.text
        assert SECRET not in refused.text


def _has_no_active_content(html: str) -> None:
    assert "<script" not in html.lower()
    assert re.search(r"\son\w+\s*=", html, re.IGNORECASE) is None, html
    assert "javascript:" not in html.lower()
    assert "tracker.example" not in html  # no remote image reports the read


def test_the_api_conversation_serves_received_html_sanitised(
    api: TestClient, pr: Postroom, tokens: Tokens
) -> None:
    made = api.post("/api/v1/cases", json={"class_name": "A-B-C"}, headers=tokens.send)
    case_id = made.json()["id"]
    got = receive(pr, mail(subject=f"About [{case_id}]", html=HOSTILE_HTML))
    pr.attach_received(got, case_id)
    [item] = api.get(f"/api/v1/cases/{case_id}/messages", headers=tokens.send).json()
    assert item["kind"] == "received"
    html = item["html"]
    _has_no_active_content(html)
    assert "Hello" in html
    assert 'href="https://ok.example/"' in html  # what is harmless stays
    schema = api.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert "sanitised" in schema["ConversationEntry"]["properties"]["html"]["description"]


def test_the_eml_viewer_shows_a_received_emails_html_sanitised(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr:
        pr.apply(MINIMAL_RECORDS)
        case = pr.cases.create("A-B-C", data={})
        got = receive(pr, mail(subject="Hi", html=HOSTILE_HTML))
        pr.attach_received(got, case.id)
        with studio_client(pr, inbox_dir=tmp_path / "inbox") as studio:
            log_in(studio)
            name = f"received-{got}.eml"
            body = studio.get(f"/cases/{case.id}/attachment", params={"name": name, "show": "body"})
        assert body.status_code == 200
        _has_no_active_content(body.text)
        assert "Hello" in body.text
