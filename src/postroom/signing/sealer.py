"""Sealing an account's outgoing message: S/MIME signature, then encryption, DKIM last.

DKIM comes last because it covers the final bytes: a signature added after it would
change the body DKIM hashed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Connection

from postroom.accounts.models import EmailAccount, Signing
from postroom.errors import ConfigurationError
from postroom.keystores.loading import KeyEntry
from postroom.keystores.store import KeystoreStore
from postroom.signing.dkim import sign_dkim
from postroom.signing.encrypt import encrypt_smime
from postroom.signing.smime import sign_smime


class Sealer:
    """Signs and encrypts what an account sends; keystore entries load once per version."""

    def __init__(self, keystores: KeystoreStore) -> None:
        self._keystores = keystores
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str | None], tuple[str, KeyEntry]] = {}

    def seal(
        self,
        conn: Connection,
        account: EmailAccount,
        message: bytes,
        *,
        encrypt_for: Sequence[x509.Certificate] = (),
    ) -> bytes:
        """``message`` signed, encrypted to ``encrypt_for`` when given, then DKIM-signed."""
        recipients = list(encrypt_for)
        if account.signing is not None:
            entry = self._entry(conn, account.signing)
            key = entry.private_key
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise ConfigurationError(f"keystore {account.signing.keystore}: not an RSA/EC key")
            message = sign_smime(message, key=key, certificate=entry.certificate, chain=entry.chain)
            if recipients and isinstance(entry.certificate.public_key(), rsa.RSAPublicKey):
                # Encrypted to the sender too, so its own copy (on the case) stays readable.
                recipients.append(entry.certificate)
        if recipients:
            message = encrypt_smime(message, recipients=recipients)
        if account.dkim is not None:
            message = sign_dkim(
                message,
                domain=account.dkim.domain,
                selector=account.dkim.selector,
                private_key_pem=account.dkim.private_key.get_secret_value().encode(),
            )
        return message

    def _entry(self, conn: Connection, signing: Signing) -> KeyEntry:
        keystore = self._keystores.get(conn, signing.keystore)
        key = (signing.keystore, signing.alias)
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None and cached[0] == keystore.fingerprint:
            return cached[1]
        # Decrypting a PKCS#12 or JKS store takes a while: once per version, not per email.
        entry = keystore.entry(signing.alias)
        with self._lock:
            self._entries[key] = (keystore.fingerprint, entry)
        return entry
