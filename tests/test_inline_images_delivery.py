"""An inline image survives the way out: SMTP signed (openssl verifies, DKIM holds),
signed and encrypted (openssl decrypts to the related structure, the image intact),
and Microsoft Graph (inline attachments the Graph double checks, MIME when signed)."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from postroom import Postroom
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings
from tests.fake_microsoft import MAILBOX, microsoft_server
from tests.fake_microsoft_rules import GraphRefusal, decode_attachment
from tests.fakes import smtp_server
from tests.graphkit import graph_postroom, graph_records
from tests.imagekit import noisy_png, png
from tests.smimekit import Signer, make_signer
from tests.test_encryption import openssl_decrypt
from tests.test_signing import needs_openssl, openssl_verify

SENDER = "letters@example.com"
CAROL = "carol@example.org"
LOGO = png(120, 45)
PASSWORD = "pfx-Pa55-word"


def letter(**images: bytes) -> dict[str, Any]:
    """A letter showing each image by its content id."""
    shown = "".join(f'<img src="cid:{cid}" alt="{cid}">' for cid in images)
    return {
        "name": "Letter",
        "subject": "Your letter",
        "html": f"<p>Dear customer,</p><p>{shown}</p>",
        "images": {
            cid: {"filename": f"{cid}.png", "content": base64.b64encode(content).decode()}
            for cid, content in images.items()
        },
    }


def keystore(signer: Signer) -> dict[str, Any]:
    pfx = pkcs12.serialize_key_and_certificates(
        b"sender", signer.key, signer.certificate, [signer.ca],
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )  # fmt: skip
    return {"name": "Signing", "content": base64.b64encode(pfx).decode(), "password": PASSWORD}


def dkim_key() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_related_with(entity: bytes, images: dict[str, bytes]) -> None:
    """``entity`` holds text, then HTML and each image in one multipart/related."""
    message = parse(entity.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    [alternative] = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    [related] = [p for p in alternative.iter_parts() if p.get_content_type() == "multipart/related"]
    parts = list(related.iter_parts())
    assert parts[0].get_content_type() == "text/html"
    found = {str(p["Content-ID"]).strip("<>"): p.get_payload(decode=True) for p in parts[1:]}
    assert found == images
    html = parts[0].get_content()
    assert all(f'src="cid:{cid}"' in html for cid in images)


def send_letter(pr: Postroom, *, to: str = CAROL) -> None:
    pr.send(to=[to], correspondence="Letter", class_name="Default")
    asyncio.run(pr.agent().run(until_idle=True))
    assert {e.status for e in pr.outbox()} == {OutboxStatus.SENT}


@needs_openssl
def test_signed_email_with_an_inline_image_verifies_and_keeps_it(tmp_path: Path) -> None:
    signer = make_signer(SENDER)
    private, public = dkim_key()
    with smtp_server() as srv:
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
            pr.apply(
                {
                    "keystores": [keystore(signer)],
                    "accounts": [
                        {
                            "name": "Default", "address": SENDER, "host": "127.0.0.1",
                            "port": srv.port, "security": "none",
                            "signing": {"keystore": "Signing"},
                            "dkim": {"domain": "example.com", "selector": "s1",
                                     "private_key": private},
                        }
                    ],
                    "correspondence": [letter(logo=LOGO)],
                }
            )  # fmt: skip
            send_letter(pr)
        [received] = srv.sink.received
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (tmp_path / "received.eml").write_bytes(raw)
    assert parse(raw).get_content_type() == "multipart/signed"
    result = openssl_verify(raw, signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    assert_related_with(result.stdout, {"logo": LOGO})

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return b"v=DKIM1; k=rsa; p=" + public if name == b"s1._domainkey.example.com." else None

    assert dkim.verify(raw, dnsfunc=dns)
    # A changed byte in the image breaks the signature: openssl checks what holds the image.
    image_line = base64.b64encode(LOGO)[:40]
    assert image_line in raw
    tampered = raw.replace(image_line, image_line[:-4] + b"AAAA", 1)
    assert openssl_verify(tampered, signer.ca_pem, tmp_path).returncode != 0


@needs_openssl
def test_encrypted_email_decrypts_to_the_related_structure_with_the_image(
    tmp_path: Path,
) -> None:
    signer, carol = make_signer(SENDER), make_signer(CAROL)
    with smtp_server() as srv:
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
            pr.apply(
                {
                    "keystores": [keystore(signer)],
                    "accounts": [
                        {
                            "name": "Default", "address": SENDER, "host": "127.0.0.1",
                            "port": srv.port, "security": "none",
                            "signing": {"keystore": "Signing"},
                            "encryption": {"certificates": [
                                {"recipient": CAROL, "certificate": carol.certificate_pem}
                            ]},
                        }
                    ],
                    "correspondence": [letter(logo=LOGO, seal=png(8, 8, (0, 90, 0)))],
                }
            )  # fmt: skip
            send_letter(pr)
        [received] = srv.sink.received
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert base64.b64encode(LOGO)[:40] not in raw  # the image travels encrypted
    decrypted = openssl_decrypt(raw, carol, tmp_path)
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    verified = openssl_verify(decrypted.stdout, signer.ca_pem, tmp_path)
    assert verified.returncode == 0, verified.stderr.decode()
    assert_related_with(verified.stdout, {"logo": LOGO, "seal": png(8, 8, (0, 90, 0))})


def test_graph_sends_inline_attachments_with_their_content_ids(tmp_path: Path) -> None:
    seal = png(8, 8, (0, 90, 0))
    with microsoft_server() as ms:
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:
            pr.apply({"correspondence": [letter(logo=LOGO, seal=seal)]})
            send_letter(pr)
        [sent] = ms.sent
    assert sent.via == "sendMail"
    assert sent.inline == {"logo.png": "logo", "seal.png": "seal"}
    assert sent.attachments == {"logo.png": LOGO, "seal.png": seal}
    by_id = {a["contentId"]: a for a in sent.message["attachments"]}
    assert by_id["logo"]["isInline"] is True
    assert by_id["logo"]["contentType"] == "image/png"
    assert sent.message["body"]["contentType"] == "HTML"
    assert 'src="cid:logo"' in sent.message["body"]["content"]


def test_graph_sends_a_message_too_large_for_one_request_as_a_draft(tmp_path: Path) -> None:
    # Four images of nearly 1 MB: over 4 MB as JSON, so the message goes as a draft.
    images = {f"photo{i}": noisy_png(580, 580, seed=i) for i in range(4)}
    assert all(900_000 < len(v) < 1024 * 1024 for v in images.values())
    with microsoft_server() as ms:
        ms.apps["app-1"].roles = ["Mail.Send", "Mail.ReadWrite"]  # drafts need both
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:
            pr.apply({"correspondence": [letter(**images)]})
            send_letter(pr)
        [sent] = ms.sent
    assert sent.via == "draft"
    assert sent.inline == {f"{cid}.png": cid for cid in images}
    assert sent.attachments == {f"{cid}.png": content for cid, content in images.items()}


@needs_openssl
def test_signed_email_goes_to_graph_as_mime_with_the_image(tmp_path: Path) -> None:
    signer = make_signer(MAILBOX)
    with microsoft_server() as ms:
        with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:
            records = graph_records(ms)
            records["accounts"][0]["signing"] = {"keystore": "Signing"}
            records["keystores"] = [keystore(signer)]
            records["correspondence"] = [letter(logo=LOGO)]
            pr.apply(records)
            send_letter(pr)
        [sent] = ms.sent
    assert sent.via == "mime"
    result = openssl_verify(sent.mime, signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert_related_with(result.stdout, {"logo": LOGO})


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"isInline": "true"}, "RequestBodyRead"),
        ({"isInline": 1}, "RequestBodyRead"),
        ({"contentId": 7}, "RequestBodyRead"),
        ({"isInline": True, "contentId": " "}, "ErrorInvalidProperty"),
        ({"contentBytes": 12}, "RequestBodyRead"),
        ({"contentBytes": "not base64!"}, "ErrorInvalidBase64String"),
        ({"contentType": ["image/png"]}, "RequestBodyRead"),
        ({"inline": True}, "RequestBodyRead"),
    ],
)
def test_the_graph_double_refuses_a_wrong_inline_attachment(
    change: dict[str, Any], code: str
) -> None:
    good = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "logo.png",
        "contentType": "image/png",
        "contentBytes": base64.b64encode(LOGO).decode(),
        "isInline": True,
        "contentId": "logo",
    }
    assert decode_attachment(good, limit=3 * 1024 * 1024) == ("logo.png", LOGO)
    with pytest.raises(GraphRefusal) as refused:
        decode_attachment({**good, **change}, limit=3 * 1024 * 1024)
    assert f'"code": "{code}"'.encode() in refused.value.reply[2]
