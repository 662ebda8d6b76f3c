"""S/MIME encryption (RFC 8551): ``application/pkcs7-mime; smime-type=enveloped-data``.

The message's MIME body (a signed ``multipart/signed`` when the account also signs:
sign, then encrypt) is enveloped with AES-256-CBC for each recipient certificate.
The outer headers (From, To, Subject, Message-ID...) stay readable, as they must
for the message to be routed; the subject is therefore not confidential.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from postroom.errors import MessageError
from postroom.signing.smime import CRLF, content_and_headers


def encrypt_smime(raw: bytes, *, recipients: Sequence[x509.Certificate]) -> bytes:
    """``raw`` with its MIME body encrypted to every certificate in ``recipients``."""
    if not recipients:
        raise MessageError("an encrypted message needs at least one recipient certificate")
    outer, content = content_and_headers(raw)
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(content + CRLF)
    builder = builder.set_content_encryption_algorithm(algorithms.AES256)
    for certificate in recipients:
        builder = builder.add_recipient(certificate)
    enveloped = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    encoded = base64.encodebytes(enveloped).replace(b"\n", CRLF)
    return CRLF.join(
        [
            *outer,
            b"MIME-Version: 1.0",
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data;",
            b' name="smime.p7m"',
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="smime.p7m"',
            b"",
            encoded,
        ]
    )
