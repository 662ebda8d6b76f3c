"""Authentication profiles as records: apply, storage, endpoints, holds and their release."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from postroom import AuthProfile, EmailAccount, Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, NotFoundError
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings

SECRET = "cl1ent-SECRET-value"


def records(**account: Any) -> dict[str, Any]:
    return {
        "auth_profiles": [
            {
                "name": "O365",
                "client_id": "app-1",
                "client_secret": SECRET,
                "tenant_id": "contoso.onmicrosoft.com",
            }
        ],
        "accounts": [
            {
                "name": "Default",
                "protocol": "graph",
                "address": "sender@contoso.example",
                "auth_profile": "O365",
                **account,
            }
        ],
    }


def test_profile_and_graph_account_apply_idempotently(postroom: Postroom) -> None:
    first = postroom.apply(records())
    assert ("auth profile", "O365", "created") in first.changes
    assert ("account", "Default", "created") in first.changes
    assert postroom.apply(records()).count("unchanged") == 2

    profile = postroom.auth_profile("O365")
    assert profile.client_secret.get_secret_value() == SECRET
    assert profile.token_endpoint.endswith("/contoso.onmicrosoft.com/oauth2/v2.0/token")
    with postroom.engine.connect() as conn:
        stored = conn.execute(select(tables.auth_profiles.c.client_secret)).scalar_one()
    assert stored.startswith("enc:v1:")
    assert SECRET not in stored

    rotated = records()
    rotated["auth_profiles"][0]["client_secret"] = "rotated-secret"
    assert ("auth profile", "O365", "updated") in postroom.apply(rotated).changes
    assert postroom.auth_profile("O365").client_secret.get_secret_value() == "rotated-secret"


def test_account_naming_a_missing_profile_is_refused(postroom: Postroom) -> None:
    config = records(auth_profile="Nope")
    with pytest.raises(ConfigurationError, match="'Nope', which does not exist"):
        postroom.apply(config)
    assert postroom.accounts() == []
    assert postroom.auth_profiles() == []  # the whole file or nothing


def test_secret_in_the_file_warns_and_env_is_expanded(
    sqlite_postroom: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = sqlite_postroom.apply(records())
    assert any("client_secret is written in the file" in w for w in report.warnings)
    monkeypatch.setenv("TEST_CLIENT_SECRET", "from-env")
    config = records()
    config["auth_profiles"][0]["client_secret"] = "${TEST_CLIENT_SECRET}"
    report = sqlite_postroom.apply(config)
    assert not any("written in the file" in w for w in report.warnings)
    assert sqlite_postroom.auth_profile("O365").client_secret.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("auth_profiles", "token_endpoint", "https://login.evil.example/token"),
        ("accounts", "graph_url", "https://graph.evil.example"),
        ("accounts", "graph_url", "http://127.0.0.1:9"),
    ],
)
def test_endpoints_outside_microsoft_are_refused_unless_allowed(
    tmp_path: Any, where: str, field: str, value: str
) -> None:
    config = records()
    config[where][0][field] = value
    if field == "token_endpoint":
        del config[where][0]["tenant_id"]  # one or the other
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with Postroom(make_settings(url)) as strict:
        with pytest.raises(ConfigurationError, match="POSTROOM_ALLOWED_ENDPOINT_HOSTS"):
            strict.apply(config)
        assert strict.auth_profiles() == []
    host = value.split("/")[2].split(":", maxsplit=1)[0]
    with Postroom(make_settings(url, allowed_endpoint_hosts=f"other.example, {host}")) as lenient:
        lenient.apply(config)


def test_scope_mismatch_warns(sqlite_postroom: Postroom) -> None:
    config = records()
    config["auth_profiles"][0]["scope"] = "https://outlook.office365.com/.default"
    report = sqlite_postroom.apply(config)
    assert any("Graph needs https://graph.microsoft.com/.default" in w for w in report.warnings)
    smtp = records(protocol="smtp", host="smtp.office365.com")
    report = sqlite_postroom.apply(smtp)
    assert any("SMTP XOAUTH2 with a Graph scope" in w for w in report.warnings)


def test_python_api_puts_records(sqlite_postroom: Postroom) -> None:
    profile = AuthProfile(
        name="P",
        client_id="app",
        client_secret=SECRET,
        token_endpoint="https://login.microsoftonline.com/t/oauth2/v2.0/token",
    )
    assert sqlite_postroom.put_auth_profile(profile) == "created"
    account = EmailAccount(
        name="Default",
        protocol="graph",
        address="a@contoso.example",
        auth_profile="P",
    )
    assert sqlite_postroom.put_account(account) == "created"
    assert sqlite_postroom.put_account(account) == "unchanged"
    sender = sqlite_postroom.sender("Default")
    assert sender.profile == profile
    assert sender.hold is None
    # A literal ${...} in a secret given through the API is a secret, not a variable.
    literal = AuthProfile.model_validate(
        {**profile.model_dump(), "client_secret": "${NOT_A_VARIABLE}"}
    )
    sqlite_postroom.put_auth_profile(literal)
    assert sqlite_postroom.auth_profile("P").client_secret.get_secret_value() == "${NOT_A_VARIABLE}"


def hold(postroom: Postroom, account: str) -> None:
    with postroom.engine.begin() as conn:
        postroom.hold_store.hold(
            conn, account, reason="AADSTS7000215", now=utcnow(), delay=lambda n: 600
        )


def test_held_account_is_released_by_a_change_or_by_hand(postroom: Postroom) -> None:
    postroom.apply(records())
    outbox_id = postroom.send(to=["x@example.com"], subject="s", body="<p>b</p>")
    hold(postroom, "Default")
    hold(postroom, "Default")
    [state] = postroom.holds()
    assert state.failures == 2
    assert state.reason == "AADSTS7000215"
    with postroom.engine.begin() as conn:
        conn.execute(tables.outbox.update().values(status=OutboxStatus.HELD.value, hold="account"))
    assert postroom.outbox_entry(outbox_id).status is OutboxStatus.HELD

    # Applying the same records changes nothing: the hold stays.
    postroom.apply(records())
    assert postroom.holds() != []
    # A new secret is a change: the hold is lifted and the email queued at once.
    rotated = records()
    rotated["auth_profiles"][0]["client_secret"] = "fixed"
    report = postroom.apply(rotated)
    assert "account Default: hold lifted, 1 held emails queued again" in report.warnings
    assert postroom.holds() == []
    entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.QUEUED
    assert entry.hold is None

    hold(postroom, "Default")
    assert postroom.release_account("Default") == 0
    assert postroom.holds() == []
    with pytest.raises(NotFoundError):
        postroom.release_account("Nobody")


def test_xoauth2_tokens_go_only_to_allowed_smtp_hosts(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    profile = records()["auth_profiles"]
    smtp = {"name": "Default", "address": "a@contoso.example", "auth_profile": "O365"}
    with Postroom(make_settings(url)) as postroom:
        office = {**smtp, "provider": "office365"}
        postroom.apply({"auth_profiles": profile, "accounts": [office]})
        relay = {**smtp, "host": "relay.example.com"}
        with pytest.raises(ConfigurationError, match="not a Microsoft SMTP host"):
            postroom.apply({"auth_profiles": profile, "accounts": [relay]})
    allowed = make_settings(url, allowed_endpoint_hosts="relay.example.com")
    with Postroom(allowed) as postroom:
        postroom.apply({"auth_profiles": profile, "accounts": [relay]})
        plain = {**relay, "security": "none", "allow_insecure_auth": True}
        with pytest.raises(ConfigurationError, match="unencrypted only on loopback"):
            postroom.apply({"auth_profiles": profile, "accounts": [plain]})


def test_emails_held_for_an_account_no_longer_held_are_queued_again(
    postroom: Postroom,
) -> None:
    postroom.apply(records())
    outbox_id = postroom.send(to=["x@example.com"], subject="s", body="<p>b</p>")
    with postroom.engine.begin() as conn:
        # What a lost race leaves: a held row whose account's hold was lifted meanwhile.
        conn.execute(tables.outbox.update().values(status=OutboxStatus.HELD.value, hold="account"))
        assert postroom.outbox_store.release_orphans(conn) == 1
    assert postroom.outbox_entry(outbox_id).status is OutboxStatus.QUEUED
