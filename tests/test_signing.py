"""S/MIME and DKIM signatures, verified by independent tools: openssl and dkimpy."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postroom.correspondence.mime import Attachment, Mailbox, OutgoingEmail, build_message
from postroom.errors import MessageError
from postroom.signing import sign_dkim, sign_smime
from tests.smimekit import Signer, make_signer

ADDRESS = "mortgages@example.com"
OPENSSL = shutil.which("openssl")
# Under CI the tool must be there (.ci/run installs it): a skip would hide a failure.
needs_openssl = pytest.mark.skipif(
    OPENSSL is None and os.environ.get("CI") != "true",
    reason="the openssl command is not installed (apt-get install openssl)",
)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer(ADDRESS)


def message(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "sender": Mailbox(ADDRESS, "MyOrg Mortgages"),
        "to": (Mailbox("carol@example.com", "Carol Çase-Manager"),),
        "subject": "Hypothèque M-1 créée — ✓",
        "html": "<p>Dear Carol, the request <b>M-1</b> is ready. Größe: 250 000 €</p>",
        "text": "Dear Carol, the request M-1 is ready. Größe: 250 000 €",
        "message_id": "<m1@example.com>",
        "date": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        "attachments": (Attachment("contract.pdf", "application/pdf", b"%PDF-1.4\x00\xff" * 500),),
        "headers": (("X-Postroom-Case", "M-1"),),
    }
    fields.update(changes)
    return build_message(OutgoingEmail(**fields))  # type: ignore[arg-type]


def openssl_verify(
    signed: bytes, ca_pem: bytes, tmp_path: Path
) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "mail.eml").write_bytes(signed)
    return subprocess.run(
        [OPENSSL, "smime", "-verify", "-in", str(tmp_path / "mail.eml"),
         "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "smimesign"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip


@needs_openssl
def test_signed_message_verifies_with_openssl(signer: Signer, tmp_path: Path) -> None:
    raw = message()
    signed = sign_smime(raw, key=signer.key, certificate=signer.certificate)
    result = openssl_verify(signed, signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    # What openssl recovers is the MIME body Postroom built, byte for byte (as lines).
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert body.replace(b"\r\n", b"\n").rstrip() in result.stdout.replace(b"\r\n", b"\n")
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert b"Subject: " in head
    assert b"Message-ID: <m1@example.com>" in head
    assert b"X-Postroom-Case: M-1" in head
    assert b"micalg=sha-256" in head
    assert max(len(line) for line in signed.split(b"\r\n")) <= 998
    assert all(b < 0x80 for b in signed)  # 7-bit: nothing for a relay to re-encode


@needs_openssl
def test_a_changed_byte_breaks_the_signature(signer: Signer, tmp_path: Path) -> None:
    signed = sign_smime(message(), key=signer.key, certificate=signer.certificate)
    tampered = signed.replace(b"M-1 is ready", b"M-2 is ready", 1)
    assert tampered != signed
    result = openssl_verify(tampered, signer.ca_pem, tmp_path)
    assert result.returncode != 0


@needs_openssl
def test_untrusted_signer_does_not_verify(signer: Signer, tmp_path: Path) -> None:
    signed = sign_smime(message(), key=signer.key, certificate=signer.certificate)
    other = make_signer(ADDRESS)
    assert openssl_verify(signed, other.ca_pem, tmp_path).returncode != 0


def test_eight_bit_bodies_are_refused(signer: Signer) -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain\r\n\r\nGr\xc3\xb6\xc3\x9fe\r\n"
    with pytest.raises(MessageError, match="7-bit"):
        sign_smime(raw, key=signer.key, certificate=signer.certificate)


def dkim_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode()


def test_dkim_verifies_with_dkimpy_over_plain_and_signed_messages(signer: Signer) -> None:
    private, public = dkim_key()
    records = {b"mail2026._domainkey.example.com.": f"v=DKIM1; k=rsa; p={public}".encode()}

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    for raw in (message(), sign_smime(message(), key=signer.key, certificate=signer.certificate)):
        signed = sign_dkim(raw, domain="example.com", selector="mail2026", private_key_pem=private)
        assert signed.startswith(b"DKIM-Signature: ")
        assert dkim.verify(signed, dnsfunc=dns)
        assert not dkim.verify(signed.replace(b"M-1", b"M-9"), dnsfunc=dns)


def test_dkim_with_a_bad_key_is_a_clear_error() -> None:
    with pytest.raises(MessageError, match=r"DKIM signing for example\.com failed"):
        sign_dkim(message(), domain="example.com", selector="s", private_key_pem=b"not a key")
