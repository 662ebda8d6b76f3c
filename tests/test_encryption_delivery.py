"""Encrypted mail end to end: the certificate map in YAML, the agent sends, openssl decrypts."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import dkim
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.errors import MessageError
from postroom.outbox import OutboxStatus
from postroom.transports.base import Envelope
from tests.conftest import make_settings
from tests.fake_microsoft import MAILBOX, microsoft_server
from tests.fakes import smtp_server
from tests.graphkit import graph_postroom, graph_records
from tests.smimekit import Signer, make_signer
from tests.test_delivery import account
from tests.test_encryption import openssl_decrypt
from tests.test_signing import needs_openssl, openssl_verify
from tests.test_signing_delivery import (
    ADDRESS,
    EXAMPLES,
    PFX_PASSWORD,
    dkim_keys,  # noqa: F401 - a fixture
    point_example_at,
    signer,  # noqa: F401 - a fixture
    signing_overlay,
)

CASE_MANAGER = "carol.manager@example.com"
DAVE = "dave@example.org"
AUDIT = "audit@example.org"


@pytest.fixture(scope="module")
def carol() -> Signer:
    return make_signer(CASE_MANAGER)


def certificate_map(carol: Signer, *, policy: str = "fail") -> dict[str, object]:
    return {
        "certificates": [{"recipient": CASE_MANAGER, "certificate": carol.certificate_pem}],
        "without_certificate": policy,
    }


@needs_openssl
def test_reference_scenario_signed_and_encrypted(
    tmp_path: Path,
    signer: Signer,  # noqa: F811 - the fixture
    carol: Signer,
    dkim_keys: tuple[bytes, bytes],  # noqa: F811 - the fixture
    server_tls: ssl.SSLContext,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = dkim_keys
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "carol.cer").write_bytes(carol.certificate.public_bytes(serialization.Encoding.DER))
    overlay = signing_overlay(tmp_path, signer, private)
    overlay["accounts"][0]["encryption"] = {
        "certificates": [{"recipient": CASE_MANAGER, "certificate_file": "carol.cer"}]
    }
    (tmp_path / "secure.yaml").write_text(yaml.safe_dump(overlay))
    with smtp_server(starttls=server_tls, credentials=(ADDRESS, "pw-demo")) as srv:
        point_example_at(monkeypatch, port=srv.port, ca_file=tmp_path / "ca.pem")
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
            postroom.apply(EXAMPLES / "mortgage.yaml")
            postroom.apply(tmp_path / "secure.yaml")
            case = postroom.cases.create(
                "MyOrg-Mortgage-Work-MortgageRequest",
                data={"applicant": "Zoë Ångström", "amount": 250000},
                operator="alice",
            )
            asyncio.run(postroom.agent().run(until_idle=True))
            [entry] = postroom.outbox()
            assert entry.status is OutboxStatus.SENT
            attached = postroom.cases.attachment(case.id, f"email-{entry.id}.eml")[1]
            history = [h.detail for h in postroom.cases.get(case.id).history]
        [received] = srv.sink.received
    assert received.rcpt_tos == [CASE_MANAGER]
    assert any(f"outbox #{entry.id} (encrypted)" in line for line in history), history
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"Zo=C3=AB" not in raw
    assert "Zoë".encode() not in raw

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return (
            b"v=DKIM1; k=rsa; p=" + public if name == b"mail2026._domainkey.example.com." else None
        )

    assert dkim.verify(raw, dnsfunc=dns)  # DKIM covers the encrypted bytes
    for reader in (carol, signer):  # the case manager, and the sender for its own copy
        decrypted = openssl_decrypt(raw, reader, tmp_path)
        assert decrypted.returncode == 0, decrypted.stderr.decode()
        verified = openssl_verify(decrypted.stdout, signer.ca_pem, tmp_path)
        assert verified.returncode == 0, verified.stderr.decode()
        assert b"Zo=C3=AB" in verified.stdout
    assert attached == raw


@needs_openssl
def test_recipients_without_a_certificate_get_their_own_unencrypted_copy(
    database_url: str, carol: Signer, tmp_path: Path
) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as postroom:
        secure = account(srv.port, encryption=certificate_map(carol, policy="send_unencrypted"))
        postroom.apply({"accounts": [secure]})
        first = postroom.send(
            to=[CASE_MANAGER], cc=[DAVE], bcc=[AUDIT], subject="Offer", body="<p>Rate 3.1%</p>"
        )
        asyncio.run(postroom.agent().run(until_idle=True))
        entries = sorted(postroom.outbox(), key=lambda e: e.id)
        assert [e.status for e in entries] == [OutboxStatus.SENT, OutboxStatus.SENT]
        assert entries[0].id == first
        messages = {tuple(m.rcpt_tos): m.raw for m in srv.sink.received}
    assert set(messages) == {(CASE_MANAGER,), (DAVE, AUDIT)}
    encrypted, plain = messages[(CASE_MANAGER,)], messages[(DAVE, AUDIT)]
    assert b"enveloped-data" in encrypted
    assert b"Rate 3.1%" not in encrypted
    assert b"Rate 3.1%" in plain
    # Each copy names only its own recipients: nobody learns of the other copy's.
    assert DAVE.encode() not in encrypted
    assert AUDIT.encode() not in encrypted
    assert CASE_MANAGER.encode() not in plain
    assert AUDIT.encode() not in plain
    decrypted = openssl_decrypt(encrypted.replace(b"\n", b"\r\n"), carol, tmp_path)
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    assert b"Rate 3.1%" in decrypted.stdout


def test_without_a_certificate_the_fail_policy_fails_the_email(
    tmp_path: Path, carol: Signer
) -> None:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [account(srv.port, encryption=certificate_map(carol))]})
        with pytest.raises(MessageError, match=rf"no encryption certificate for {DAVE}"):
            pr.send(to=[CASE_MANAGER, DAVE], subject="Offer", body="<p>b</p>")
        assert pr.outbox() == []  # nothing half-queued
        # A case step fails visibly instead: a failed outbox row and a history line.
        pr.apply(
            {
                "operators": [{"id": "boss", "name": "Boss", "email": DAVE}],
                "case_types": [
                    {
                        "class": "Loan",
                        "class_group": "Loan",
                        "id_prefix": "L-",
                        "steps": [
                            {
                                "on": "created",
                                "to": [{"operator": "boss"}],
                                "subject": "New",
                                "body": "<p>new loan</p>",
                            },
                        ],
                    }
                ],
            }
        )
        case = pr.cases.create("Loan", data={})
        [entry] = pr.outbox()
        assert entry.status is OutboxStatus.FAILED
        assert f"no encryption certificate for {DAVE}" in (entry.last_error or "")
        history = [h.detail for h in pr.cases.get(case.id).history]
        assert any("no encryption certificate" in line for line in history), history
        assert srv.sink.received == []


@needs_openssl
def test_encrypted_mail_goes_to_graph_as_mime(tmp_path: Path, carol: Signer) -> None:
    with microsoft_server() as ms:
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
            records = graph_records(ms)
            records["accounts"][0]["encryption"] = certificate_map(carol, policy="send_unencrypted")
            postroom.apply(records)
            postroom.send(to=[CASE_MANAGER, DAVE], subject="Graph", body="<p>Größe</p>")
            asyncio.run(postroom.agent().run(until_idle=True))
            assert {e.status for e in postroom.outbox()} == {OutboxStatus.SENT}
        by_route = {s.via: s for s in ms.sent}
    assert set(by_route) == {"mime", "sendMail"}
    plain = str(by_route["sendMail"].message)
    assert DAVE in plain
    assert CASE_MANAGER not in plain
    assert "Größe" in plain
    mime = by_route["mime"].mime
    assert b"To: " + CASE_MANAGER.encode() in mime
    assert DAVE.encode() not in mime
    decrypted = openssl_decrypt(mime, carol, tmp_path)
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    assert b"Gr=C3=B6=C3=9Fe" in decrypted.stdout


def test_graph_never_sends_a_mime_copy_to_addresses_outside_its_envelope(
    tmp_path: Path, carol: Signer
) -> None:
    sealed = (
        f"From: {MAILBOX}\r\nTo: {CASE_MANAGER}, {DAVE}\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"x" * 30).decode() + "\r\n"
    ).encode()
    with microsoft_server() as ms:
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
            transport = postroom.transports(postroom.sender("Default"))
            envelope = Envelope(mail_from=MAILBOX, recipients=(CASE_MANAGER,), message=sealed)
            with pytest.raises(Exception, match=rf"{DAVE} are not recipients of this one") as info:
                asyncio.run(transport.send(envelope))
            assert type(info.value).__name__ == "PermanentDeliveryError"
        assert ms.sent == []


@needs_openssl
def test_a_pkcs12_sender_encrypts_to_itself(tmp_path: Path, carol: Signer) -> None:
    sender = make_signer(MAILBOX)
    pfx = pkcs12.serialize_key_and_certificates(
        b"s", sender.key, sender.certificate, None,
        serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
    )  # fmt: skip
    with microsoft_server() as ms:
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
            records = graph_records(
                ms, signing={"keystore": "S"}, encryption=certificate_map(carol)
            )
            content = base64.b64encode(pfx).decode()
            records["keystores"] = [{"name": "S", "content": content, "password": PFX_PASSWORD}]
            postroom.apply(records)
            postroom.send(to=[CASE_MANAGER], subject="self", body="<p>kept</p>")
            asyncio.run(postroom.agent().run(until_idle=True))
        [sent] = ms.sent
    for reader in (carol, sender):
        decrypted = openssl_decrypt(sent.mime, reader, tmp_path)
        assert decrypted.returncode == 0, decrypted.stderr.decode()


def test_accounts_show_lists_the_certificate_map(tmp_path: Path, carol: Signer) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as postroom:
        policy = certificate_map(carol, policy="send_unencrypted")
        postroom.apply({"accounts": [account(2525, encryption=policy)]})
    result = CliRunner().invoke(
        app, ["--database-url", url, "accounts", "show", "Default"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "S/MIME AES-256, 1 certificates; recipients without one: they get an" in result.output
    until = f"{carol.certificate.not_valid_after_utc:%Y-%m-%d}"
    assert f"{CASE_MANAGER}" in result.output
    assert f"valid until {until}" in result.output
