"""``check_connectivity`` and ``postroom accounts test`` against real SMTP servers on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from typer.testing import CliRunner

from postroom import Postroom, Settings
from postroom.accounts import EmailAccount
from postroom.accounts.connectivity import ConnectivityReport, Step, check_connectivity
from postroom.cli import app
from postroom.outbox.classify import EXPLANATIONS
from tests.fakes import ServerInfo, SmtpSink, free_port, smtp_server

USER = "clerk@example.com"
PASSWORD = "s3cret-Pa55word-for-tests"
SECRET_KEY = "connectivity-test-key-0123456789"


def account(port: int, **fields: Any) -> EmailAccount:
    values: dict[str, Any] = {
        "name": "Test",
        "address": USER,
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
    }
    values.update(fields)
    return EmailAccount(**values)


def check(acct: EmailAccount, *, timeout: float = 10.0) -> ConnectivityReport:
    return asyncio.run(check_connectivity(acct, timeout=timeout))


def names(report: ConnectivityReport) -> list[str]:
    return [step.name for step in report.steps]


def failure(report: ConnectivityReport) -> Step:
    """The last step, which must be the only failed one."""
    assert not report.ok
    *earlier, last = report.steps
    assert all(step.ok for step in earlier), earlier
    assert not last.ok
    assert last.explanation
    return last


@contextmanager
def server_replying_to_auth(reply: str, tls: ssl.SSLContext) -> Iterator[ServerInfo]:
    """A STARTTLS server that answers every AUTH with ``reply``."""

    def authenticator(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, message=reply)

    sink = SmtpSink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        ready_timeout=10,
        tls_context=tls,
        authenticator=authenticator,
    )
    controller.start()
    try:
        yield ServerInfo("127.0.0.1", controller.port, sink, controller)
    finally:
        controller.stop()


def test_starttls_with_auth_passes_every_step(server_tls: ssl.SSLContext, ca_pem: str) -> None:
    with smtp_server(starttls=server_tls, credentials=(USER, PASSWORD)) as srv:
        report = check(account(srv.port, truststore=ca_pem, password=PASSWORD))

    assert report.ok, report.steps
    assert names(report) == ["resolve", "connect", "EHLO", "STARTTLS", "TLS", "EHLO", "AUTH"]
    resolve, connect, ehlo, starttls, tls, ehlo_tls, auth = report.steps
    assert "127.0.0.1" in resolve.detail
    assert "220" in connect.detail
    assert "STARTTLS" in ehlo.detail
    assert starttls.detail.startswith("220")
    assert "TLSv1." in tls.detail
    assert "trustme" in tls.detail  # subject and issuer of the certificate
    assert "valid until 3000-01-01" in tls.detail
    assert "WARNING" not in tls.detail
    assert "AUTH" in ehlo_tls.detail
    assert "SIZE" in ehlo_tls.detail
    assert "PLAIN accepted" in auth.detail
    assert all(step.explanation == "" for step in report.steps)
    assert srv.sink.connections == 2  # one EHLO before TLS, one after


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_passes(server_tls: ssl.SSLContext, ca_pem: str) -> None:
    # aiosmtpd only counts STARTTLS as TLS: over implicit TLS it hides AUTH unless told not to.
    with smtp_server(
        implicit_tls=server_tls, credentials=(USER, PASSWORD), auth_require_tls=False
    ) as srv:
        report = check(account(srv.port, security="tls", truststore=ca_pem, password=PASSWORD))

    assert report.ok, report.steps
    assert names(report) == ["resolve", "connect", "TLS", "EHLO", "AUTH"]
    assert "TLSv1." in report.steps[2].detail


def test_without_password_there_is_no_auth_step(server_tls: ssl.SSLContext, ca_pem: str) -> None:
    with smtp_server(starttls=server_tls) as srv:
        report = check(account(srv.port, truststore=ca_pem))

    assert report.ok, report.steps
    assert names(report) == ["resolve", "connect", "EHLO", "STARTTLS", "TLS", "EHLO"]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_untrusted_certificate_fails_at_tls(server_tls: ssl.SSLContext, security: str) -> None:
    tls_kwargs: dict[str, Any] = {"implicit_tls" if security == "tls" else "starttls": server_tls}
    with smtp_server(**tls_kwargs) as srv:
        # No truststore: the system CAs do not know the test CA.
        report = check(account(srv.port, security=security, password=PASSWORD))

    step = failure(report)
    assert step.name == "TLS"
    assert "CERTIFICATE_VERIFY_FAILED" in step.detail
    assert "add the CA that issued it to the account's truststore" in step.explanation
    assert "AUTH" not in names(report)


def test_certificate_expiring_soon_is_warned(ca: trustme.CA, ca_pem: str) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", common_name="relay.test", not_after=soon).configure_cert(context)
    with smtp_server(starttls=context) as srv:
        report = check(account(srv.port, truststore=ca_pem))

    assert report.ok, report.steps
    tls = report.steps[names(report).index("TLS")]
    assert "CN=relay.test" in tls.detail
    assert "WARNING: the certificate expires in" in tls.detail


def test_server_without_starttls_is_never_downgraded(ca_pem: str) -> None:
    with smtp_server() as srv:
        report = check(account(srv.port, truststore=ca_pem, password=PASSWORD))

    step = failure(report)
    assert names(report) == ["resolve", "connect", "EHLO", "STARTTLS"]
    assert "never continues unencrypted" in step.explanation
    assert "set security to 'tls'" in step.explanation


def test_implicit_tls_against_a_plain_port_suggests_starttls(
    server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(starttls=server_tls) as srv:
        report = check(account(srv.port, security="tls", truststore=ca_pem))

    step = failure(report)
    assert names(report) == ["resolve", "connect", "TLS"]
    assert f"port {srv.port} may expect STARTTLS: set security to starttls" in step.explanation


def test_starttls_against_an_implicit_tls_port_suggests_tls(
    server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(implicit_tls=server_tls) as srv:
        report = check(account(srv.port, truststore=ca_pem), timeout=0.5)

    step = failure(report)
    assert step.name == "connect"
    assert "set security to tls" in step.explanation


def test_wrong_password_fails_auth_without_revealing_it(
    server_tls: ssl.SSLContext, ca_pem: str
) -> None:
    with smtp_server(starttls=server_tls, credentials=(USER, "the-right-one")) as srv:
        report = check(account(srv.port, truststore=ca_pem, password=PASSWORD))

    step = failure(report)
    assert step.name == "AUTH"
    assert step.detail.startswith("535")
    assert "check both" in step.explanation  # user ID and password
    for text in (s.name + s.detail + s.explanation for s in report.steps):
        assert PASSWORD not in text
        assert "the-right-one" not in text


def test_disabled_mechanism_is_not_used(server_tls: ssl.SSLContext, ca_pem: str) -> None:
    advanced = {"mail.smtp.auth.plain.disable": "true"}
    with smtp_server(starttls=server_tls, credentials=(USER, PASSWORD)) as srv:
        report = check(account(srv.port, truststore=ca_pem, password=PASSWORD, advanced=advanced))

    assert report.ok, report.steps
    assert "LOGIN accepted" in report.steps[-1].detail


def test_connection_refused_on_a_closed_port() -> None:
    port = free_port()
    report = check(account(port, password=PASSWORD))

    step = failure(report)
    assert names(report) == ["resolve", "connect"]
    assert f"nothing accepts connections on 127.0.0.1:{port}" in step.explanation
    assert "firewall" in step.explanation


@pytest.mark.parametrize(
    ("reply", "key"),
    [
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
            "for the Tenant",
            (535, "5.7.139"),
        ),
        ("530 5.7.0 Must issue a STARTTLS command first", (530, "5.7.0")),
    ],
)
def test_provider_auth_replies_are_explained(
    server_tls: ssl.SSLContext, ca_pem: str, reply: str, key: tuple[int, str]
) -> None:
    with server_replying_to_auth(reply, server_tls) as srv:
        report = check(account(srv.port, truststore=ca_pem, password=PASSWORD))

    step = failure(report)
    assert step.name == "AUTH"
    assert step.detail == reply
    assert step.explanation == EXPLANATIONS[key]


# The command line


def apply_account(database_url: str, port: int, ca_pem: str) -> None:
    records = {
        "accounts": [
            {
                "name": "Relay",
                "address": USER,
                "password": PASSWORD,
                "host": "127.0.0.1",
                "port": port,
                "security": "starttls",
                "truststore": ca_pem,
            }
        ]
    }
    postroom = Postroom(Settings(database_url=database_url, secret_key=SECRET_KEY))
    try:
        postroom.apply(records)
    finally:
        postroom.close()


def run_cli(database_url: str) -> Any:
    return CliRunner().invoke(
        app,
        ["--database-url", database_url, "accounts", "test", "Relay"],
        env={"POSTROOM_SECRET_KEY": SECRET_KEY, "POSTROOM_SMTP_TIMEOUT": "10"},
    )


def test_cli_lists_the_steps(tmp_path: Path, server_tls: ssl.SSLContext, ca_pem: str) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with smtp_server(starttls=server_tls, credentials=(USER, PASSWORD)) as srv:
        apply_account(url, srv.port, ca_pem)
        result = run_cli(url)

    assert result.exit_code == 0, result.output
    for name in ("resolve", "connect", "EHLO", "STARTTLS", "TLS", "AUTH"):
        assert f"✓ {name} " in result.output
    assert "✗" not in result.output
    assert PASSWORD not in result.output


def test_cli_exits_1_and_explains_a_failure(tmp_path: Path, ca_pem: str) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    apply_account(url, free_port(), ca_pem)
    result = run_cli(url)

    assert result.exit_code == 1, result.output
    assert "✓ resolve " in result.output
    assert "✗ connect " in result.output
    assert "nothing accepts connections" in result.output
