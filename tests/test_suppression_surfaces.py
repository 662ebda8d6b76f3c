"""The suppression list through the CLI, the REST API and the Studio: list, add, remove, export,
and bad input refused in one line; recipients shown with state, code, status and reason."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.cli.outbox import recipient_reply
from postroom.db import tables
from postroom.outbox.models import Recipient, RecipientState
from postroom.suppression import EVERYWHERE, SuppressionReason
from tests.apikit import MINIMAL_RECORDS, Tokens, client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import csrf_of, log_in, studio_client

API = "/api/v1/suppressions"
JANE = "jane@example.net"
BOUNCED_DETAIL = '=HYPERLINK("http://x") 550 5.1.1 no such user'


@pytest.fixture
def pr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Postroom]:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'sup.db'}")) as opened:
        opened.apply(MINIMAL_RECORDS)
        yield opened


@pytest.fixture
def tokens(pr: Postroom) -> Tokens:
    return issue_tokens(pr)


@pytest.fixture
def api(pr: Postroom) -> Iterator[TestClient]:
    with client(pr) as c:
        yield c


def cli(pr: Postroom, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--database-url", pr.settings.database_url, *args])
    return result.exit_code, result.output


def bounced(pr: Postroom, address: str = "old@example.org") -> None:
    """An automatic entry, as a delivery report makes it."""
    with pr.engine.begin() as conn:
        pr.suppression_store.suppress(
            conn,
            address,
            scope="Default",
            reason=SuppressionReason.HARD_BOUNCE,
            detail=BOUNCED_DETAIL,
            outbox_id=7,
            inbound_id=3,
        )


# --- CLI ----------------------------------------------------------------------------------


def test_cli_adds_lists_exports_and_removes(pr: Postroom) -> None:
    code, out = cli(pr, "suppressions", "add", "Jane@Example.net", "--reason-text", "by phone")
    assert (code, out) == (0, f"{JANE} suppressed for every account\n")
    code, out = cli(pr, "suppressions", "add", JANE)
    assert code == 0
    assert out.startswith(f"{JANE} was already suppressed since ")
    assert "manual (by phone); left as it is" in out
    assert cli(pr, "suppressions", "add", JANE, "--account", "Default")[0] == 0
    bounced(pr)

    code, out = cli(pr, "suppressions", "list")
    assert code == 0
    assert "old@example.org" in out
    assert "hard_bounce" in out
    assert "3 suppressed" in out
    code, out = cli(pr, "suppressions", "list", "--everywhere", "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["address"] == JANE
    assert entry["account"] is None
    assert entry["reason"] == "manual"
    assert entry["detail"] == "by phone"
    assert entry["created_by"] == "cli"
    assert entry["description"].startswith("suppressed since ")
    code, out = cli(pr, "suppressions", "list", "--account", "Default", "--search", "OLD", "--json")
    [old] = json.loads(out)
    assert (old["address"], old["account"], old["outbox_id"]) == ("old@example.org", "Default", 7)

    code, out = cli(pr, "suppressions", "remove", JANE, "--account", "Default")
    assert (code, out) == (0, f"{JANE} no longer suppressed for Default (1 entry)\n")
    assert [e.scope for e in pr.suppressions(search="jane")] == [EVERYWHERE]
    assert cli(pr, "suppressions", "remove", JANE.upper())[1] == (
        f"{JANE} no longer suppressed (1 entry)\n"
    )
    assert pr.suppressions(search="jane") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "not an address"], "is not a valid email address"),
        (["add", JANE, "--account", "Nope"], "account: no email account named 'Nope'"),
        (["add", JANE, "--reason-text", "x\ny"], "detail contains control character"),
        (["remove", JANE], f"{JANE} is not suppressed"),
        (["remove", JANE, "--account", "Default"], "is not suppressed for account Default"),
        (["list", "--account", "Default", "--everywhere"], "not both"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(pr: Postroom, args: list[str], message: str) -> None:
    code, out = cli(pr, "suppressions", *args)
    assert code != 0
    assert message in out
    assert out.count("\n") == 1
    assert "Traceback" not in out


def test_outbox_show_prints_each_recipients_state_code_status_and_reason(pr: Postroom) -> None:
    oid = pr.send(to=["a@example.net", "b@example.net"], subject="S", body="B")
    recipients = [
        Recipient("a@example.net", RecipientState.BOUNCED, 550, "user unknown", "5.1.1"),
        Recipient("b@example.net", RecipientState.SUPPRESSED, None, "suppressed since x"),
    ]
    with pr.engine.begin() as conn:
        t = tables.outbox
        conn.execute(
            t.update().where(t.c.id == oid).values(recipients=[r.to_json() for r in recipients])
        )
    code, out = cli(pr, "outbox", "show", str(oid))
    assert code == 0
    assert "recipient: a@example.net [bounced] 550 5.1.1 user unknown\n" in out
    assert "recipient: b@example.net [suppressed] suppressed since x\n" in out
    code, out = cli(pr, "outbox", "show", str(oid), "--json")
    shown = json.loads(out)["recipients"]
    assert shown[0] == {
        "address": "a@example.net",
        "state": "bounced",
        "code": 550,
        "text": "user unknown",
        "enhanced": "5.1.1",
    }
    assert shown[1]["state"] == "suppressed"
    assert shown[1]["enhanced"] is None


# --- REST API -----------------------------------------------------------------------------


def test_api_adds_lists_pages_exports_and_removes(
    pr: Postroom, api: TestClient, tokens: Tokens
) -> None:
    h = tokens.admin
    made = api.post(API, json={"address": "Jane@Example.net", "detail": "asked"}, headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["account"] is None
    assert made.json()["created_by"] == "API token admin"
    again = api.post(API, json={"address": JANE, "detail": "other"}, headers=h)
    assert again.status_code == 200
    assert again.json()["detail"] == "asked"  # the entry there stands
    scoped = api.post(API, json={"address": JANE, "account": "Default"}, headers=h)
    assert scoped.status_code == 201
    bounced(pr)

    listed = api.get(API, params={"limit": 2}, headers=h)
    assert listed.status_code == 200
    page = listed.json()
    assert [e["address"] for e in page["items"]] == ["old@example.org", JANE]
    following = api.get(page["next"], headers=h).json()
    assert [(e["address"], e["account"]) for e in following["items"]] == [(JANE, None)]
    assert following["next"] is None
    only = api.get(API, params={"everywhere": "true"}, headers=h).json()["items"]
    assert [e["account"] for e in only] == [None]
    found = api.get(API, params={"search": "old", "account": "Default"}, headers=h).json()
    assert [e["reason"] for e in found["items"]] == ["hard_bounce"]

    exported = api.get(API, params={"format": "csv"}, headers=h)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["address"] for r in rows] == ["old@example.org", JANE, JANE]
    # A remote server's text never becomes a spreadsheet formula.
    assert rows[0]["detail"] == "'" + BOUNCED_DETAIL
    assert rows[0]["outbox_id"] == "7"

    gone = api.delete(f"{API}/{JANE}", params={"account": "Default"}, headers=h)
    assert gone.status_code == 204
    missing = api.delete(f"{API}/{JANE}", params={"account": "Default"}, headers=h)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"{JANE} is not suppressed for account Default"
    assert api.delete(f"{API}/{JANE.upper()}", headers=h).status_code == 204
    assert [s.address for s in pr.suppressions()] == ["old@example.org"]


def test_api_refuses_bad_input_and_send_tokens(api: TestClient, tokens: Tokens) -> None:
    h = tokens.admin
    bad = api.post(API, json={"address": "nope"}, headers=h)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.address"
    unknown = api.post(API, json={"address": JANE, "account": "Nope"}, headers=h)
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {"field": "body.account", "message": "no email account named 'Nope'"}
    ]
    both = api.get(API, params={"account": "Default", "everywhere": "true"}, headers=h)
    assert both.status_code == 422
    assert api.post(API, json={"address": JANE, "extra": 1}, headers=h).status_code == 422
    assert api.get(API, headers=tokens.send).status_code == 403
    assert api.post(API, json={"address": JANE}, headers=tokens.send).status_code == 403
    assert api.delete(f"{API}/{JANE}", headers=tokens.send).status_code == 403


# --- Studio -------------------------------------------------------------------------------


def test_studio_adds_searches_exports_and_removes_after_asking(pr: Postroom) -> None:
    bounced(pr)
    with studio_client(pr) as c:
        log_in(c)
        listed = c.get("/suppressions")
        assert listed.status_code == 200
        assert "old@example.org" in listed.text
        assert "hard_bounce" in listed.text
        assert 'href="/outbox/7"' in listed.text
        token = csrf_of(listed.text)

        refused = c.post("/suppressions", data={"csrf_token": token, "address": "x y"})
        assert refused.status_code == 422
        assert "is not a valid email address" in refused.text
        assert c.post("/suppressions", data={"address": JANE}).status_code == 403  # no CSRF
        added = c.post(
            "/suppressions",
            data={"csrf_token": token, "address": JANE, "account": "*", "detail": "by letter"},
        )
        assert added.status_code == 200
        assert f"{JANE} suppressed for (every account)." in added.text
        [entry] = pr.suppressions(search="jane")
        assert (entry.scope, entry.created_by, entry.detail) == ("*", "admin", "by letter")

        searched = c.get("/suppressions", params={"q": "jane"})
        assert JANE in searched.text
        assert "old@example.org" not in searched.text
        exported = c.get("/suppressions.csv", params={"scope": "Default"})
        assert exported.headers["content-type"].startswith("text/csv")
        assert [r["address"] for r in csv.DictReader(io.StringIO(exported.text))] == [
            "old@example.org"
        ]

        remove = "/suppressions/remove?address=old%40example.org&scope=Default"
        asked = c.post(remove, data={"csrf_token": token})
        assert "Stop suppressing old@example.org for account Default" in asked.text
        assert len(pr.suppressions()) == 2  # nothing removed before the confirmation
        done = c.post(remove, data={"csrf_token": token, "confirm": "1"})
        assert "old@example.org is no longer suppressed for account Default." in done.text
        assert [s.address for s in pr.suppressions()] == [JANE]


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "shown"),
    [
        (550, "5.1.1", "550 5.1.1 user unknown", "550 5.1.1 user unknown"),
        (550, "5.1.1", "5.1.1 user unknown", "550 5.1.1 user unknown"),
        (550, "5.1.1", "user unknown", "550 5.1.1 user unknown"),
        (421, "4.4.1", "421 4.4.1 connection timed out", "421 4.4.1 connection timed out"),
        (250, None, "2.0.0 Ok: queued", "250 2.0.0 Ok: queued"),
        (None, None, "suppressed since 2026-12-05: manual", "suppressed since 2026-12-05: manual"),
    ],
)
def test_a_recipients_code_and_status_are_printed_once(
    code: int | None, enhanced: str | None, text: str, shown: str
) -> None:
    r = Recipient("a@example.com", RecipientState.BOUNCED, code, text, enhanced)
    assert recipient_reply(r) == shown
