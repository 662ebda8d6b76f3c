"""Signed mail end to end: keystore and DKIM in YAML, the agent sends, openssl and dkimpy verify."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import dkim
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select
from typer.testing import CliRunner

from postroom import Keystore, Postroom
from postroom.cli import app
from postroom.db import tables
from postroom.errors import ConfigurationError
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY, make_settings
from tests.fake_microsoft import MAILBOX, microsoft_server
from tests.fakes import smtp_server
from tests.graphkit import graph_postroom, graph_records
from tests.smimekit import Signer, make_signer
from tests.test_signing import needs_openssl, openssl_verify

EXAMPLES = Path(__file__).parent.parent / "examples"
ADDRESS = "mortgages@example.com"
PFX_PASSWORD = "pfx-Pa55-word"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer(ADDRESS)


@pytest.fixture(scope="module")
def dkim_keys() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public)


def signing_overlay(tmp_path: Path, signer: Signer, dkim_private: bytes) -> dict[str, Any]:
    pfx = pkcs12.serialize_key_and_certificates(
        b"mortgages",
        signer.key,
        signer.certificate,
        [signer.ca],
        serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
    )
    (tmp_path / "signing.pfx").write_bytes(pfx)
    (tmp_path / "dkim.pem").write_bytes(dkim_private)
    example = yaml.safe_load((EXAMPLES / "mortgage.yaml").read_text())
    [account] = [a for a in example["accounts"] if a["name"] == "MyOrg-Mortgage-Work"]
    account = {
        **account,
        "signing": {"keystore": "Mortgages-Signing"},
        "dkim": {"domain": "example.com", "selector": "mail2026", "private_key_file": "dkim.pem"},
    }
    return {
        "keystores": [
            {"name": "Mortgages-Signing", "file": "signing.pfx", "password": "${PFX_PASSWORD}"}
        ],
        "accounts": [account],
    }


def point_example_at(monkeypatch: pytest.MonkeyPatch, *, port: int, ca_file: Path) -> None:
    """The environment examples/mortgage.yaml and the signing overlay read."""
    for env, value in {
        "POSTROOM_DEMO_SMTP_PASSWORD": "pw-demo",
        "POSTROOM_DEMO_SMTP_PORT": str(port),
        "POSTROOM_DEMO_CA_FILE": str(ca_file),
        "PFX_PASSWORD": PFX_PASSWORD,
    }.items():
        monkeypatch.setenv(env, value)


@needs_openssl
def test_reference_scenario_with_signing_verifies(
    tmp_path: Path,
    signer: Signer,
    dkim_keys: tuple[bytes, bytes],
    server_tls: ssl.SSLContext,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = dkim_keys
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "signing.yaml").write_text(
        yaml.safe_dump(signing_overlay(tmp_path, signer, private))
    )
    with smtp_server(starttls=server_tls, credentials=(ADDRESS, "pw-demo")) as srv:
        point_example_at(monkeypatch, port=srv.port, ca_file=tmp_path / "ca.pem")
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
            postroom.apply(EXAMPLES / "mortgage.yaml")
            report = postroom.apply(tmp_path / "signing.yaml")
            assert ("keystore", "Mortgages-Signing", "created") in report.changes
            case = postroom.cases.create(
                "MyOrg-Mortgage-Work-MortgageRequest",
                data={"applicant": "Zoë Ångström", "amount": 250000},
                operator="alice",
            )
            asyncio.run(postroom.agent().run(until_idle=True))
            [entry] = postroom.outbox()
            assert entry.status is OutboxStatus.SENT
            attached = postroom.cases.attachment(case.id, f"email-{entry.id}.eml")[1]
        [received] = srv.sink.received
    assert received.rcpt_tos == ["carol.manager@example.com"]
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    result = openssl_verify(raw, signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "Zoë Ångström".encode() in result.stdout or b"Zo=C3=AB" in result.stdout

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        if name == b"mail2026._domainkey.example.com.":
            return b"v=DKIM1; k=rsa; p=" + public
        return None

    assert dkim.verify(raw, dnsfunc=dns)
    assert attached == raw  # the case keeps exactly what was sent, signatures included


def test_wrong_keystore_password_or_alias_fails_the_apply(
    tmp_path: Path,
    signer: Signer,
    dkim_keys: tuple[bytes, bytes],
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overlay = signing_overlay(tmp_path, signer, dkim_keys[0])
    (tmp_path / "ca.pem").write_text(ca_pem)
    monkeypatch.setenv("POSTROOM_DEMO_CA_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("POSTROOM_DEMO_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("PFX_PASSWORD", "wrong-password-123")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(overlay))
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
        with pytest.raises(ConfigurationError, match="password") as wrong:
            postroom.apply(tmp_path / "s.yaml")
        assert "wrong-password-123" not in str(wrong.value)
        monkeypatch.setenv("PFX_PASSWORD", PFX_PASSWORD)
        overlay["accounts"][0]["signing"]["alias"] = "nobody"
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(overlay))
        with pytest.raises(ConfigurationError, match="nobody"):
            postroom.apply(tmp_path / "s.yaml")
        assert postroom.keystores() == []


def test_keystore_commands_show_the_certificate_never_the_secrets(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = signing_overlay(tmp_path, signer, b"")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.setenv("PFX_PASSWORD", PFX_PASSWORD)
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    (tmp_path / "k.yaml").write_text(yaml.safe_dump({"keystores": overlay["keystores"]}))
    runner = CliRunner()
    result = runner.invoke(app, ["--database-url", url, "apply", str(tmp_path / "k.yaml")])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["--database-url", url, "keystores", "list"])
    shown = runner.invoke(
        app, ["--database-url", url, "keystores", "show", "Mortgages-Signing", "--address",
              "other@example.com"],
    )  # fmt: skip
    assert listed.exit_code == 0, listed.output
    assert shown.exit_code == 0, shown.output
    assert "pkcs12" in listed.output
    assert ADDRESS in shown.output
    assert "Postroom Test CA" in shown.output
    assert "RSA 2048" in shown.output
    assert "does not cover other@example.com" in shown.output
    for output in (result.output, listed.output, shown.output):
        assert PFX_PASSWORD not in output
    with Postroom(make_settings(url)) as postroom, postroom.engine.connect() as conn:
        stored = conn.execute(select(tables.keystores.c.content, tables.keystores.c.password))
        content, password = stored.one()
    assert content.startswith("enc:v1:")
    assert password.startswith("enc:v1:")
    assert PFX_PASSWORD not in password


@needs_openssl
def test_signed_mail_goes_to_graph_as_mime_and_still_verifies(
    tmp_path: Path, dkim_keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    graph_signer = make_signer(MAILBOX)
    private, public = dkim_keys
    pfx = pkcs12.serialize_key_and_certificates(
        b"sender", graph_signer.key, graph_signer.certificate, None,
        serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
    )  # fmt: skip
    with microsoft_server() as ms:
        url = f"sqlite:///{tmp_path / 'p.db'}"
        with graph_postroom(url, ms) as postroom:
            records = graph_records(ms)
            records["accounts"][0]["signing"] = {"keystore": "S"}
            records["accounts"][0]["dkim"] = {
                "domain": "contoso.example", "selector": "s1", "private_key": private.decode(),
            }  # fmt: skip
            content = base64.b64encode(pfx).decode()
            records["keystores"] = [{"name": "S", "content": content, "password": PFX_PASSWORD}]
            postroom.apply(records)
            postroom.send(
                to=["carol@example.org"], bcc=["audit@example.org"],
                subject="Signé ✓", body="<p>Größe</p>",
            )  # fmt: skip
            asyncio.run(postroom.agent().run(until_idle=True))
            [entry] = postroom.outbox()
        [sent] = ms.sent
    assert entry.status is OutboxStatus.SENT
    assert sent.via == "mime"
    assert sent.mime.startswith(b"Bcc: audit@example.org\r\n")  # Graph reads recipients there
    result = openssl_verify(sent.mime, graph_signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return b"v=DKIM1; k=rsa; p=" + public if name == b"s1._domainkey.contoso.example." else None

    assert dkim.verify(sent.mime, dnsfunc=dns)


def test_python_api_puts_a_keystore_after_opening_it(tmp_path: Path, signer: Signer) -> None:
    pfx = pkcs12.serialize_key_and_certificates(
        b"m", signer.key, signer.certificate, None,
        serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
    )  # fmt: skip
    content = base64.b64encode(pfx).decode()
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
        wrong = Keystore(name="K", content=content, password="not-it")
        with pytest.raises(ConfigurationError, match="password is wrong"):
            postroom.put_keystore(wrong)
        right = Keystore(name="K", content=content, password=PFX_PASSWORD)
        assert postroom.put_keystore(right) == "created"
        assert postroom.keystore("K").kind == "pkcs12"
