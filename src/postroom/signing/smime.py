"""S/MIME detached signatures (RFC 8551): ``multipart/signed`` with SHA-256.

The message Postroom builds is already 7-bit and CRLF (quoted-printable text,
base64 attachments), so relays have nothing to re-encode and the signature holds.
The message's MIME body becomes the signed part; its other headers (From, To,
Subject, Message-ID...) stay on the outer message, as mail clients expect.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from postroom.errors import MessageError

CRLF = b"\r\n"
# Headers that describe the MIME body travel with it into the signed part.
_CONTENT_HEADERS = (b"content-type", b"content-transfer-encoding", b"content-disposition")

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines, without the final CRLF) and the body."""
    head, separator, body = raw.partition(CRLF + CRLF)
    if not separator:
        raise MessageError("the message has no body separator (CRLF CRLF)")
    fields: list[bytes] = []
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += CRLF + line
        else:
            fields.append(line)
    return fields, body


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def content_and_headers(raw: bytes) -> tuple[list[bytes], bytes]:
    """The outer header fields, and the MIME entity (content headers + body) to protect.

    The entity ends without its final CRLF: in a multipart, that CRLF belongs to the
    next boundary (RFC 2046), so a signature must not cover it.
    """
    fields, body = split_message(raw)
    if any(b > 0x7F for b in body) or b"\r" in body.replace(CRLF, b""):
        # 8-bit or bare CR/LF would be re-encoded by some relay and break the signature.
        raise MessageError("only a 7-bit CRLF message can be signed or encrypted safely")
    inner = [f for f in fields if _name(f) in _CONTENT_HEADERS]
    outer = [f for f in fields if _name(f) not in (*_CONTENT_HEADERS, b"mime-version")]
    return outer, CRLF.join(inner) + CRLF + CRLF + body.removesuffix(CRLF)


def sign_smime(
    raw: bytes,
    *,
    key: SigningKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """``raw`` as a ``multipart/signed`` message with a detached SHA-256 signature."""
    outer, content = content_and_headers(raw)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content)
    builder = builder.add_signer(certificate, key, hashes.SHA256())
    for extra in chain:
        builder = builder.add_certificate(extra)
    signature = builder.sign(
        serialization.Encoding.DER,
        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
    )
    boundary = f"----=_signed_{secrets.token_hex(12)}".encode()
    encoded = base64.encodebytes(signature).replace(b"\n", CRLF)
    return CRLF.join(
        [
            *outer,
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";',
            b' micalg=sha-256; boundary="' + boundary + b'"',
            b"",
            b"This is a signed message (S/MIME).",
            b"--" + boundary,
            content,
            b"--" + boundary,
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="smime.p7s"',
            b"",
            encoded.removesuffix(CRLF),
            b"--" + boundary + b"--",
            b"",
        ]
    )
