"""Admin Studio, inbound mail: the account form's inbound settings, the triage list, a
received message's page and the case's conversation timeline (server-side HTML)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.inbound.settings import AfterIngest, InboundProtocol
from tests.conftest import make_settings
from tests.studiokit import log_in, mortgage_records, studio_client
from tests.test_studio import account_form

IMAP_SECRET = "imap-Pa55-never-shown-QUUX"


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as opened:
        opened.apply(mortgage_records())
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
        ({"inbound_protocol": "imap", "inbound_password": "x"}, "inbound host is required"),
        (
            {"inbound_protocol": "imap", "inbound_host": "h.example", "inbound_password": "x",
             "inbound_after": "move"},
            "move needs move_to",
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
