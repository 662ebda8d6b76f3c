"""SMTP with XOAUTH2, connectivity tests for Graph and XOAUTH2, and the profile CLI."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY
from tests.fake_microsoft import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    SMTP_RESOURCE,
    FakeMicrosoft,
    microsoft_server,
)
from tests.fakes import OAuthSmtpSink, smtp_server
from tests.graphkit import graph_postroom, graph_records


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with microsoft_server() as fake:
        yield fake


def xoauth2_records(ms: FakeMicrosoft, port: int, ca_pem: str) -> dict[str, object]:
    return {
        "auth_profiles": [
            {
                "name": "O365-SMTP",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "token_endpoint": ms.token_endpoint,
                "scope": f"{SMTP_RESOURCE}/.default",
            }
        ],
        "accounts": [
            {
                "name": "Default",
                "address": MAILBOX,
                "host": "localhost",
                "port": port,
                "security": "starttls",
                "truststore": ca_pem,
                "auth_profile": "O365-SMTP",
            }
        ],
    }


def test_smtp_sends_with_xoauth2_and_refreshes_a_refused_token(
    tmp_path: Path, ms: FakeMicrosoft, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    sink = OAuthSmtpSink(
        check_token=lambda user, token: user == MAILBOX and ms.token_valid(token, SMTP_RESOURCE)
    )
    with (
        smtp_server(sink, starttls=server_tls, auth_required=True) as srv,
        graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom,
    ):
        postroom.apply(xoauth2_records(ms, srv.port, ca_pem))
        postroom.send(to=["a@example.org"], subject="one", body="<p>1</p>")
        asyncio.run(postroom.agent().run(until_idle=True))
        ms.expire_all_tokens()  # the server refuses the cached token now
        postroom.send(to=["b@example.org"], subject="two", body="<p>2</p>")
        asyncio.run(postroom.agent().run(until_idle=True))
        assert postroom.outbox_counts()[OutboxStatus.SENT] == 2
    assert [r.rcpt_tos for r in sink.received] == [["a@example.org"], ["b@example.org"]]
    assert sink.auth_attempts == [(MAILBOX, True), (MAILBOX, False), (MAILBOX, True)]
    assert ms.token_requests == 2


def test_xoauth2_refused_after_a_fresh_token_holds_the_account(
    tmp_path: Path, ms: FakeMicrosoft, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    sink = OAuthSmtpSink()  # refuses every token: SMTP AUTH disabled for the mailbox, say
    with (
        smtp_server(sink, starttls=server_tls, auth_required=True) as srv,
        # No heartbeat, which would check the hold at once (zero backoff in tests).
        graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms, heartbeat_interval=300) as postroom,
    ):
        postroom.apply(xoauth2_records(ms, srv.port, ca_pem))
        outbox_id = postroom.send(to=["a@example.org"], subject="one", body="<p>1</p>")
        asyncio.run(postroom.agent().run(until_idle=True))
        entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.HELD
    assert "refused a fresh access token" in (entry.last_error or "")
    assert len(sink.auth_attempts) == 2  # the token, then one fresh one
    assert sink.received == []


def test_graph_connectivity_reports_token_mailbox_permission(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.apps[CLIENT_ID].roles = ["Mail.Send", "User.Read.All"]
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        report = postroom.test_account("Default")
    assert [s.name for s in report.steps] == ["token", "mailbox", "permission"]
    assert report.ok
    token = report.steps[0].detail
    assert "aud https://graph.microsoft.com" in token
    assert "roles Mail.Send" in token
    assert "expires" in token
    [issued] = ms.issued
    assert all(issued not in s.detail for s in report.steps)  # the token is never shown


@pytest.mark.parametrize(
    ("fault", "step", "words"),
    [
        ("secret", "token", "not its Secret ID"),
        ("tenant", "token", "tenant does not exist"),
        ("mailbox", "mailbox", "does not exist in this tenant"),
        ("inactive", "mailbox", "inactive, soft-deleted or on-premises"),
        ("role", "permission", "Mail.Send application permission"),
    ],
)
def test_graph_connectivity_explains_each_failure(
    tmp_path: Path, ms: FakeMicrosoft, fault: str, step: str, words: str
) -> None:
    ms.apps[CLIENT_ID].roles = ["Mail.Send", "User.Read.All"]
    if fault == "tenant":
        ms.tenants.clear()
    elif fault == "mailbox":
        ms.mailboxes.clear()
    elif fault == "inactive":
        ms.mailboxes[MAILBOX] = "inactive"
    elif fault == "role":
        ms.apps[CLIENT_ID].roles = ["User.Read.All"]
    secret = "wrong" if fault == "secret" else CLIENT_SECRET
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms, secret=secret) as postroom:
        report = postroom.test_account("Default")
    assert not report.ok
    [failed] = [s for s in report.steps if not s.ok]
    assert failed.name == step
    assert words in failed.explanation


def test_mail_send_alone_passes_without_the_mailbox_lookup(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        report = postroom.test_account("Default")
    assert report.ok
    _, mailbox, permission = report.steps
    assert mailbox.detail.startswith("not checked: 403")
    assert "User.Read.All" in mailbox.explanation
    assert permission.ok


def test_xoauth2_connectivity_shows_the_token_step(
    tmp_path: Path, ms: FakeMicrosoft, server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    sink = OAuthSmtpSink(check_token=lambda user, token: ms.token_valid(token, SMTP_RESOURCE))
    with (
        smtp_server(sink, starttls=server_tls, auth_required=True) as srv,
        graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom,
    ):
        postroom.apply(xoauth2_records(ms, srv.port, ca_pem))
        report = postroom.test_account("Default")
    names = [s.name for s in report.steps]
    assert names[-2:] == ["token", "AUTH"], report.steps
    assert report.ok
    assert "XOAUTH2 accepted" in report.steps[-1].detail


def test_profile_and_account_commands(
    tmp_path: Path, ms: FakeMicrosoft, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("POSTROOM_ALLOWED_ENDPOINT_HOSTS", "127.0.0.1")
    with graph_postroom(url, ms, secret="wr0ng-Planted-9") as postroom:
        postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        asyncio.run(postroom.agent().run(until_idle=True))
    runner = CliRunner()
    outputs = {}
    for args in (
        ["profiles", "list"],
        ["profiles", "show", "O365"],
        ["profiles", "test", "O365"],
        ["accounts", "list"],
        ["accounts", "show", "Default"],
        ["outbox", "list"],
    ):
        result = runner.invoke(app, ["--database-url", url, *args])
        outputs[" ".join(args)] = result.output
        expected = 1 if args[-2:] == ["test", "O365"] else 0
        assert result.exit_code == expected, (args, result.output)
    assert "•••••• (set)" in outputs["profiles show O365"]
    assert "Default" in outputs["profiles list"]  # used by
    assert "AADSTS7000215" in outputs["profiles test O365"]
    assert "held" in outputs["accounts list"]
    assert "held since" in outputs["accounts show Default"]
    assert "AADSTS7000215" in outputs["accounts show Default"]
    assert "held" in outputs["outbox list"]
    for output in outputs.values():
        assert "wr0ng-Planted-9" not in output

    with Postroom.open(url, allowed_endpoint_hosts="127.0.0.1") as postroom:
        postroom.apply(graph_records(ms))
    result = runner.invoke(app, ["--database-url", url, "accounts", "release", "Default"])
    assert result.exit_code == 0, result.output
    assert "account Default is active" in result.output
    result = runner.invoke(app, ["--database-url", url, "profiles", "test", "O365"])
    assert result.exit_code == 0, result.output
    assert "roles Mail.Send" in result.output
