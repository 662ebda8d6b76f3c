"""Rough edges a new user met: confirming a token revoke, admin commands, template errors."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.identity import Scope
from tests.apikit import http, issue_tokens, mounted, serve
from tests.conftest import make_settings
from tests.studiokit import log_in, mortgage_records, studio_client


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'review.db'}")) as opened:
        opened.apply(mortgage_records())
        yield opened


@pytest.fixture
def client(pr: Postroom) -> Iterator[TestClient]:
    with studio_client(pr) as c:
        yield c


def test_revoking_a_token_in_the_studio_asks_first(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    issued = pr.identity.create_token(name="tour", scopes={Scope.SEND})
    token = issued.token
    url = f"/tokens/{token.id}/revoke"

    asked = client.post(url, data={"csrf_token": csrf}, follow_redirects=False)
    assert asked.status_code == 200
    text = html.unescape(asked.text)
    assert f"Revoke token tour ({token.id})? Applications using it will get 401." in text
    assert 'name="confirm" value="1"' in asked.text
    assert f'action="{url}"' in asked.text
    assert 'href="/tokens"' in asked.text  # the way back, without revoking
    assert pr.identity.authenticate(issued.value) is not None

    done = client.post(url, data={"csrf_token": csrf, "confirm": "1"}, follow_redirects=False)
    assert done.status_code == 303
    assert pr.identity.authenticate(issued.value) is None
    assert f"Token {token.id} (tour) revoked." in html.unescape(client.get("/tokens").text)


def test_revoking_an_unknown_token_is_a_404(client: TestClient) -> None:
    csrf = log_in(client)
    missing = client.post("/tokens/nope/revoke", data={"csrf_token": csrf})
    assert missing.status_code == 404


def test_revoke_buttons_of_tokens_with_one_name_say_which_token(
    client: TestClient, pr: Postroom
) -> None:
    log_in(client)
    first = pr.identity.create_token(name="tour", scopes={Scope.SEND}).token
    second = pr.identity.create_token(name="tour", scopes={Scope.ADMIN}).token
    listed = client.get("/tokens").text
    assert f'<span class="sr"> token tour ({first.id})</span>' in listed
    assert f'<span class="sr"> token tour ({second.id})</span>' in listed


ADMIN_PASSWORD = "correct horse battery"


def test_admin_commands_check_the_user_before_asking_for_a_password(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'admins.db'}"]
    env = {"POSTROOM_SECRET_KEY": "k" * 32}
    typed = f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    made = runner.invoke(app, [*db, "admin", "create", "ops"], input=typed, env=env)
    assert made.exit_code == 0, made.output
    assert "password:" in made.output  # asked, as a new user needs one
    assert "admin user ops created" in made.output

    nobody = runner.invoke(app, [*db, "admin", "password", "nobody"], input=typed, env=env)
    assert nobody.exit_code != 0
    assert "no admin user named 'nobody'" in nobody.output
    assert "password:" not in nobody.output
    assert "again" not in nobody.output

    taken = runner.invoke(app, [*db, "admin", "create", "ops"], input=typed, env=env)
    assert taken.exit_code != 0
    assert "an admin user named 'ops' already exists" in taken.output
    assert "again" not in taken.output
    assert "password:" not in taken.output.lower()

    changed = runner.invoke(app, [*db, "admin", "password", "ops"], input=typed, env=env)
    assert changed.exit_code == 0, changed.output
    assert "password of ops changed" in changed.output


@pytest.mark.parametrize(
    ("field", "record"),
    [
        ("subject", {"subject": "Hi {{ name", "html": "<p>ok</p>"}),
        ("html", {"subject": "Hi", "html": "<p>{% if %}</p>"}),
        ("text", {"subject": "Hi", "html": "<p>ok</p>", "text": "{{ }}"}),
    ],
)
def test_a_template_that_does_not_compile_names_its_field_in_the_api(
    pr: Postroom, field: str, record: dict[str, str]
) -> None:
    tokens = issue_tokens(pr)
    body = {"name": "T1", **record}
    with serve(mounted(pr)) as base, http(base) as api:
        created = api.post("/api/v1/correspondence", json=body, headers=tokens.admin)
        assert created.status_code == 422, created.text
        problem = created.json()
        assert problem["detail"].startswith(f"correspondence 'T1' {field}: syntax error on line 1")
        [error] = problem["errors"]
        assert error["field"] == f"body.{field}"
        assert error["message"].startswith("syntax error on line 1")
        assert api.get("/api/v1/correspondence/T1", headers=tokens.admin).status_code == 404

        fine = {"name": "T1", "subject": "Hi", "html": "<p>ok</p>"}
        assert api.post("/api/v1/correspondence", json=fine, headers=tokens.admin).is_success
        replaced = api.put("/api/v1/correspondence/T1", json=body, headers=tokens.admin)
        assert replaced.status_code == 422, replaced.text
        assert [e["field"] for e in replaced.json()["errors"]] == [f"body.{field}"]


def test_apply_prints_a_template_error_as_before(tmp_path: Path) -> None:
    records = tmp_path / "records.yaml"
    records.write_text(
        "correspondence:\n  - name: T1\n    subject: 'Hi {{ name'\n    html: '<p>ok</p>'\n"
    )
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'apply.db'}"]
    env = {"POSTROOM_SECRET_KEY": "k" * 32, "COLUMNS": "200"}
    applied = runner.invoke(app, [*db, "apply", str(records)], env=env)
    assert applied.exit_code != 0
    assert "error: correspondence 'T1' subject: syntax error on line 1:" in applied.output
    assert "Traceback" not in applied.output
