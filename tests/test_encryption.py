"""S/MIME encryption: the certificate map, the split by policy, and openssl decrypting it."""

from __future__ import annotations

import datetime as dt
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from postroom.accounts.encryption import (
    Encryption,
    WithoutCertificate,
    encryption_warnings,
    plan_copies,
)
from postroom.config.files import read_certificate_files
from postroom.errors import ConfigurationError, MessageError
from postroom.signing import sign_smime
from postroom.signing.encrypt import encrypt_smime
from tests.smimekit import Signer, issue_leaf, make_signer
from tests.test_signing import OPENSSL, message, needs_openssl, openssl_verify

NOW = dt.datetime.now(dt.UTC)
CAROL = "carol@bank.example"
DAVE = "dave@example.org"


@pytest.fixture(scope="module")
def carol() -> Signer:
    return make_signer(CAROL)


@pytest.fixture(scope="module")
def sender() -> Signer:
    return make_signer("mortgages@example.com")


def openssl_decrypt(
    raw: bytes, recipient: Signer, tmp_path: Path
) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    (tmp_path / "enc.eml").write_bytes(raw)
    (tmp_path / "recip.pem").write_text(recipient.certificate_pem)
    (tmp_path / "recip.key").write_bytes(recipient.key_pem)
    return subprocess.run(
        [OPENSSL, "smime", "-decrypt", "-in", str(tmp_path / "enc.eml"),
         "-recip", str(tmp_path / "recip.pem"), "-inkey", str(tmp_path / "recip.key")],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip


def encryption(*rows: tuple[str, Signer], policy: str = "fail") -> Encryption:
    return Encryption.model_validate(
        {
            "certificates": [{"recipient": r, "certificate": s.certificate_pem} for r, s in rows],
            "without_certificate": policy,
        }
    )


@needs_openssl
def test_openssl_decrypts_what_postroom_encrypts(carol: Signer, tmp_path: Path) -> None:
    raw = message()
    encrypted = encrypt_smime(raw, recipients=[carol.certificate])
    head, _body = encrypted.split(b"\r\n\r\n", 1)
    assert b"smime-type=enveloped-data" in head
    assert b"Subject: " in head
    assert b"Message-ID: <m1@example.com>" in head
    assert b"Dear Carol" not in encrypted
    assert b"%PDF" not in encrypted
    assert all(b < 0x80 for b in encrypted)
    result = openssl_decrypt(encrypted, carol, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    # What comes out is the MIME entity Postroom built: html, text and the attachment.
    entity = message_from_bytes(result.stdout, policy=policy.default)
    assert isinstance(entity, EmailMessage)
    html = entity.get_body(("html",))
    text = entity.get_body(("plain",))
    assert html is not None
    assert "Größe: 250 000 €" in html.get_content()
    assert text is not None
    assert "M-1 is ready" in text.get_content()
    [attachment] = list(entity.iter_attachments())
    assert attachment.get_content() == b"%PDF-1.4\x00\xff" * 500


@needs_openssl
def test_the_content_is_aes_256(carol: Signer, tmp_path: Path) -> None:
    assert OPENSSL is not None
    (tmp_path / "enc.eml").write_bytes(encrypt_smime(message(), recipients=[carol.certificate]))
    printed = subprocess.run(
        [OPENSSL, "cms", "-cmsout", "-print", "-inform", "SMIME", "-in", str(tmp_path / "enc.eml")],
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert b"aes-256-cbc" in printed


@needs_openssl
def test_another_key_cannot_decrypt(carol: Signer, tmp_path: Path) -> None:
    encrypted = encrypt_smime(message(), recipients=[carol.certificate])
    assert openssl_decrypt(encrypted, make_signer(CAROL), tmp_path).returncode != 0


@needs_openssl
def test_signed_then_encrypted_decrypts_then_verifies(
    carol: Signer, sender: Signer, tmp_path: Path
) -> None:
    signed = sign_smime(message(), key=sender.key, certificate=sender.certificate)
    encrypted = encrypt_smime(signed, recipients=[carol.certificate, sender.certificate])
    for reader in (carol, sender):  # each recipient, and the sender for its own copy
        result = openssl_decrypt(encrypted, reader, tmp_path)
        assert result.returncode == 0, result.stderr.decode()
        assert b"multipart/signed" in result.stdout
        # The decrypted entity is a complete S/MIME signed part: openssl verifies it.
        verified = openssl_verify(result.stdout, sender.ca_pem, tmp_path)
        assert verified.returncode == 0, verified.stderr.decode()


def test_encrypting_needs_a_recipient_and_a_7_bit_message(carol: Signer) -> None:
    with pytest.raises(MessageError, match="at least one recipient certificate"):
        encrypt_smime(message(), recipients=[])
    raw = b"From: a@example.com\r\nContent-Type: text/plain\r\n\r\nGr\xc3\xb6\xc3\x9fe\r\n"
    with pytest.raises(MessageError, match="7-bit"):
        encrypt_smime(raw, recipients=[carol.certificate])


def test_everyone_with_a_certificate_gets_one_encrypted_copy(carol: Signer) -> None:
    bank = make_signer("gateway@bank.example")
    enc = encryption((CAROL, carol), ("@bank.example", bank))
    [copy] = plan_copies(enc, [CAROL, "Erin@Bank.example"], now=NOW)
    assert copy.recipients == (CAROL, "Erin@Bank.example")
    assert copy.certificates == (carol.certificate, bank.certificate)  # first row wins


def test_without_a_certificate_the_policy_decides(carol: Signer) -> None:
    with pytest.raises(MessageError, match=rf"no encryption certificate for {DAVE}"):
        plan_copies(encryption((CAROL, carol)), [CAROL, DAVE], now=NOW)
    copies = plan_copies(
        encryption((CAROL, carol), policy="send_unencrypted"), [CAROL, DAVE], now=NOW
    )
    assert [(c.recipients, c.encrypted) for c in copies] == [((CAROL,), True), ((DAVE,), False)]
    only_plain = plan_copies(encryption((CAROL, carol), policy="send_unencrypted"), [DAVE], now=NOW)
    assert [(c.recipients, c.encrypted) for c in only_plain] == [((DAVE,), False)]
    assert [c.recipients for c in plan_copies(None, [CAROL, DAVE], now=NOW)] == [(CAROL, DAVE)]


def test_a_certificate_that_is_not_valid_now_never_sends_in_clear(carol: Signer) -> None:
    enc = encryption((CAROL, carol), policy="send_unencrypted")
    later = carol.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(MessageError, match=rf"certificate for {CAROL} expired on"):
        plan_copies(enc, [CAROL, DAVE], now=later)
    earlier = carol.certificate.not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(MessageError, match="is not valid before"):
        plan_copies(enc, [CAROL], now=earlier)


def ec_certificate_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"recipient": CAROL, "certificate": "not a certificate"}, "must be a PEM certificate"),
        ({"recipient": CAROL, "certificate": "EC"}, "must have an RSA key"),
        ({"recipient": CAROL, "certificate": "TWO"}, "exactly one certificate, not 2"),
        ({"recipient": "carol", "certificate": "OK"}, "not a valid email address"),
        ({"recipient": "@", "certificate": "OK"}, "not a valid email address"),
        ({"recipient": CAROL, "certificate": "OK", "cert": "x"}, "Extra inputs"),
    ],
)
def test_bad_rows_are_refused_clearly(carol: Signer, row: dict[str, str], error: str) -> None:
    pems = {"EC": ec_certificate_pem(), "TWO": carol.certificate_pem * 2}
    pems["OK"] = carol.certificate_pem
    row = {**row, "certificate": pems.get(row["certificate"], row["certificate"])}
    with pytest.raises(ValidationError, match=error):
        Encryption.model_validate({"certificates": [row]})


def test_an_empty_map_or_unknown_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        Encryption.model_validate({"certificates": []})
    with pytest.raises(ValidationError, match="'fail' or 'send_unencrypted'"):
        Encryption.model_validate({"certificates": [], "without_certificate": "maybe"})
    assert Encryption.model_fields["without_certificate"].default is WithoutCertificate.FAIL


def test_warnings_name_expiry_mismatched_names_and_dead_rows(carol: Signer) -> None:
    soon = make_signer(DAVE, days=10)
    enc = encryption((CAROL, carol), (DAVE, soon), ("frank@example.org", carol), (CAROL, soon))
    warnings = encryption_warnings(enc, now=NOW)
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith(f"{DAVE}: the certificate expires in ")
    assert warnings[1] == (
        f"frank@example.org: the certificate names {CAROL}, not this address; "
        "is it the right person's?"
    )
    assert warnings[2] == f"{CAROL}: an earlier row already matches; this one never will"


def test_expired_rows_are_warned_about(carol: Signer) -> None:
    issuer = make_signer("ca@example.org")
    expired = issue_leaf(
        carol.key.public_key(), issuer.key, issuer.certificate,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CAROL)]), emails=(CAROL,),
        not_before=NOW - dt.timedelta(days=40), not_after=NOW - dt.timedelta(days=5),
    )  # fmt: skip
    pem = expired.public_bytes(serialization.Encoding.PEM).decode()
    enc = Encryption.model_validate({"certificates": [{"recipient": CAROL, "certificate": pem}]})
    [warning] = encryption_warnings(enc, now=NOW)
    assert warning.startswith(f"{CAROL}: the certificate expired on ")


def test_certificate_files_are_read_as_pem_or_der(carol: Signer, tmp_path: Path) -> None:
    (tmp_path / "carol.pem").write_text(carol.certificate_pem)
    der = carol.certificate.public_bytes(serialization.Encoding.DER)
    (tmp_path / "carol.cer").write_bytes(der)
    for name in ("carol.pem", "carol.cer"):
        entry = {"encryption": {"certificates": [{"recipient": CAROL, "certificate_file": name}]}}
        read_certificate_files(entry, tmp_path, "accounts[0]")
        [row] = Encryption.model_validate(entry["encryption"]).certificates
        assert row.x509 == carol.certificate
    (tmp_path / "junk.cer").write_bytes(b"\x00\x01junk")
    for rows, error in [
        ([{"recipient": CAROL, "certificate_file": "missing.pem"}], "cannot read"),
        ([{"recipient": CAROL, "certificate_file": "junk.cer"}], "not a PEM or DER certificate"),
        ([{"recipient": CAROL, "certificate_file": "carol.pem", "certificate": "x"}], "not both"),
    ]:
        with pytest.raises(ConfigurationError, match=error):
            read_certificate_files({"encryption": {"certificates": rows}}, tmp_path, "a")
