"""The inbound stages of ``postroom accounts test`` against a real Dovecot."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import trustme
from typer.testing import CliRunner

from postroom import Postroom, Settings
from postroom.accounts import EmailAccount
from postroom.accounts.connectivity import Step
from postroom.auth.tokens import TokenCache
from postroom.cli import app
from postroom.inbound.check import check_inbound
from tests.conftest import make_settings
from tests.dovecotkit import (
    PASSWORD,
    Dovecot,
    Mailbox,
    dovecot_fixture,
    introspection_server,
    mailbox_fixture,
    message,
)
from tests.fake_microsoft import CLIENT_ID, CLIENT_SECRET, SMTP_RESOURCE, microsoft_server
from tests.fakes import free_port, smtp_server
from tests.graphkit import graph_postroom, graph_records

pytestmark = pytest.mark.dovecot

dovecot = dovecot_fixture()
dovecot_no_idle = dovecot_fixture(idle=False)
mailbox = mailbox_fixture()
poll_mailbox = mailbox_fixture(server="dovecot_no_idle")

SECRET_KEY = "inbound-check-key-0123456789abcd"
STAGES = ["inbound connect", "inbound TLS", "inbound login", "inbound folder", "inbound IDLE"]


def check(account: EmailAccount) -> list[Step]:
    tokens = TokenCache(timeout=5)
    return asyncio.run(check_inbound(account, None, tokens=tokens, allowed_hosts=(), timeout=10))


def failure(steps: list[Step]) -> Step:
    """The last step, which must be the only failed one, with words on what to do."""
    *earlier, last = steps
    assert all(step.ok for step in earlier), earlier
    assert not last.ok, steps
    assert last.explanation
    return last


def test_a_good_account_passes_every_stage(mailbox: Mailbox) -> None:
    mailbox.append(message("one"))
    mailbox.append(message("two"))
    steps = check(mailbox.account())
    assert [s.name for s in steps] == STAGES
    assert all(s.ok for s in steps), steps
    tls, login, folder, idle = steps[1:]
    assert "valid until" in tls.detail
    assert "issued by" in tls.detail
    assert mailbox.user in login.detail
    assert "INBOX: 2 messages" in folder.detail
    assert idle.detail.startswith("offered")
    assert not idle.explanation
    # The test only looks: nothing was flagged or moved.
    assert all(mailbox.flags(uid) == set() for uid in mailbox.uids())


def test_starttls_passes_its_own_stage(mailbox: Mailbox) -> None:
    steps = check(mailbox.account(security="starttls"))
    assert [s.name for s in steps] == [
        "inbound connect",
        "inbound STARTTLS",
        "inbound TLS",
        "inbound login",
        "inbound folder",
        "inbound IDLE",
    ]
    assert all(s.ok for s in steps), steps


def test_a_server_without_idle_gets_a_note(poll_mailbox: Mailbox) -> None:
    steps = check(poll_mailbox.account(poll_seconds=45))
    assert all(s.ok for s in steps), steps
    assert steps[-1].name == "inbound IDLE"
    assert steps[-1].detail == "not offered"
    assert "polled every 45 s" in steps[-1].explanation


def test_a_wrong_password_is_explained_and_never_shown(mailbox: Mailbox) -> None:
    wrong = "wrong-Password-77"
    steps = check(mailbox.account(password=wrong))
    last = failure(steps)
    assert last.name == "inbound login"
    assert f"user ID ({mailbox.user})" in last.explanation
    text = repr(steps)
    assert wrong not in text
    assert PASSWORD not in text


def test_an_unknown_folder_lists_the_folders_there(mailbox: Mailbox) -> None:
    mailbox.create_folder("Replies-2026")
    last = failure(check(mailbox.account(folder="Replies")))
    assert last.name == "inbound folder"
    assert "'Replies' does not exist" in last.detail
    assert "INBOX" in last.explanation
    assert "Replies-2026" in last.explanation


def test_a_missing_move_to_folder_is_explained(mailbox: Mailbox) -> None:
    last = failure(check(mailbox.account(after="move", move_to="Handled")))
    assert last.name == "inbound move_to"
    assert "'Handled' does not exist" in last.detail
    mailbox.create_folder("Handled")
    steps = check(mailbox.account(after="move", move_to="Handled"))
    assert all(s.ok for s in steps), steps


def test_a_closed_port_is_explained(mailbox: Mailbox) -> None:
    last = failure(check(mailbox.account(port=free_port())))
    assert last.name == "inbound connect"
    assert "nothing accepts connections" in last.explanation


def test_an_untrusted_certificate_is_explained(mailbox: Mailbox) -> None:
    other = trustme.CA().cert_pem.bytes().decode()
    steps = check(mailbox.account(truststore=other))
    last = failure(steps)
    assert [s.name for s in steps] == ["inbound connect", "inbound TLS"]
    assert "not trusted" in last.explanation
    assert "truststore" in last.explanation


def test_implicit_tls_on_the_starttls_port_is_explained(mailbox: Mailbox) -> None:
    last = failure(check(mailbox.account(port=mailbox.server.port)))
    assert last.name == "inbound TLS"
    assert "starttls" in last.explanation


def test_no_inbound_section_adds_no_stage(mailbox: Mailbox) -> None:
    plain = EmailAccount(name="Out", address="out@example.com", host="127.0.0.1")
    assert check(plain) == []


def test_a_missing_auth_profile_is_a_failed_stage(mailbox: Mailbox) -> None:
    account = mailbox.account(password=None, auth_profile="Nope")
    last = failure(check(account))
    assert last.name == "inbound token"
    assert "Nope" in last.detail


def _apply(url: str, record: dict[str, Any]) -> None:
    postroom = Postroom(Settings(database_url=url, secret_key=SECRET_KEY))
    try:
        postroom.apply({"accounts": [record]})
    finally:
        postroom.close()


def _cli(url: str) -> Any:
    return CliRunner().invoke(
        app,
        ["--database-url", url, "accounts", "test", "Desk"],
        env={"POSTROOM_SECRET_KEY": SECRET_KEY, "POSTROOM_SMTP_TIMEOUT": "10"},
    )


def test_accounts_test_prints_the_inbound_stages_after_smtp(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with smtp_server() as srv:
        record = mailbox.account_yaml("Desk")
        record.update(port=srv.port)
        _apply(url, record)
        result = _cli(url)
        assert result.exit_code == 0, result.output
        assert result.output.index("✓ connect ") < result.output.index("✓ inbound connect ")
        for stage in STAGES:
            assert f"✓ {stage} " in result.output
        assert PASSWORD not in result.output

        record["inbound"]["password"] = "Not-it-123"
        _apply(url, record)
        result = _cli(url)
    assert result.exit_code == 1, result.output
    assert "✓ inbound connect " in result.output
    assert "✗ inbound login " in result.output
    assert "Not-it-123" not in result.output


def test_xoauth2_shows_the_token_then_the_login(tmp_path: Path, ca: trustme.CA) -> None:
    holder: dict[str, str] = {}
    with (
        microsoft_server() as ms,
        introspection_server(
            lambda token: holder["user"] if ms.token_valid(token, SMTP_RESOURCE) else None
        ) as url,
        smtp_server() as srv,
    ):
        server = Dovecot(ca, introspection_url=url).start()
        try:
            box = server.add_user()
            holder["user"] = box.user
            record = box.account_yaml("Desk", password=None, auth_profile="O365-IMAP")
            record.update(port=srv.port)
            profile = {
                "name": "O365-IMAP",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "token_endpoint": ms.token_endpoint,
                "scope": f"{SMTP_RESOURCE}/.default",
            }
            settings = make_settings(
                f"sqlite:///{tmp_path / 'p.db'}", allowed_endpoint_hosts="127.0.0.1"
            )
            with Postroom(settings) as postroom:
                postroom.apply({"auth_profiles": [profile], "accounts": [record]})
                report = postroom.test_account("Desk")
        finally:
            server.stop()
    inbound = [s for s in report.steps if s.name.startswith("inbound")]
    assert report.ok, report.steps
    assert [s.name for s in inbound] == ["inbound token", *STAGES]
    assert "XOAUTH2 accepted" in inbound[3].detail


def test_starttls_on_a_port_that_never_greets_suggests_implicit_tls(mailbox: Mailbox) -> None:
    with socket.socket() as silent:  # as an implicit-TLS port waits for our handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        account = mailbox.account(port=silent.getsockname()[1], security="starttls")
        tokens = TokenCache(timeout=5)
        steps = asyncio.run(
            check_inbound(account, None, tokens=tokens, allowed_hosts=(), timeout=1.5)
        )
    last = failure(steps)
    assert last.name == "inbound greeting"
    assert "set inbound security to tls" in last.explanation


def test_an_unencrypted_session_is_told_starttls_is_offered(mailbox: Mailbox) -> None:
    steps = check(mailbox.account(security="none", allow_insecure_auth=True))
    assert all(s.ok for s in steps), steps
    greeting = steps[1]
    assert greeting.name == "inbound greeting"
    assert "set inbound security to starttls" in greeting.explanation


def test_graph_inbound_steps_follow_the_sending_ones(tmp_path: Path) -> None:
    with (
        microsoft_server() as ms,
        graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom,
    ):
        postroom.apply(graph_records(ms, inbound={"protocol": "graph"}))
        report = postroom.test_account("Default")
    names = [s.name for s in report.steps]
    assert names[:3] == ["token", "mailbox", "permission"]
    inbound = names[3:]
    assert inbound[0] == "inbound token"
    assert "inbound folder" in inbound
    assert all(name.startswith("inbound ") for name in inbound)
