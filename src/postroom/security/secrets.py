"""Encryption of secrets at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key comes from ``POSTROOM_SECRET_KEY`` (any string; stretched with HKDF) or from a
generated key file, created with mode 0600 beside the SQLite database.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from postroom.errors import ConfigurationError, SecretError
from postroom.settings import Settings

_PREFIX = "enc:v1:"
_MIN_KEY_LENGTH = 16


class SecretBox:
    """Encrypts and decrypts secret strings with one key."""

    def __init__(self, key_material: bytes) -> None:
        if len(key_material) < _MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"the secret key must be at least {_MIN_KEY_LENGTH} characters long"
            )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"postroom-secrets", info=b"fernet"
        ).derive(key_material)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._material = key_material

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (signing, say), independent of the encryption key."""
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"postroom-secrets",
            info=b"derived:" + purpose.encode(),
        ).derive(self._material)

    def encrypt(self, plaintext: str) -> str:
        return _PREFIX + self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, stored: str, *, what: str = "a secret") -> str:
        if not stored.startswith(_PREFIX):
            raise SecretError(f"{what} is not stored in an encrypted form Postroom knows")
        try:
            return self._fernet.decrypt(stored.removeprefix(_PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"{what} cannot be decrypted: the secret key differs from the one that "
                "encrypted it (check POSTROOM_SECRET_KEY or the key file)"
            ) from None


def load_secret_box(
    settings: Settings, *, holds_secrets: Callable[[], bool] = lambda: False
) -> SecretBox:
    """The box for these settings, generating a key file on first use.

    ``holds_secrets`` says whether the database already stores encrypted secrets: then a
    missing key file was lost, and a new key would make them unreadable for good.
    """
    if settings.secret_key is not None:
        return SecretBox(settings.secret_key.get_secret_value().encode())
    path = settings.resolved_key_file()
    if not path.exists() and holds_secrets():
        raise SecretError(
            f"the key file {path} is missing, but the database holds secrets encrypted with "
            "it: restore the file (or set POSTROOM_SECRET_KEY to the key) rather than "
            "starting a new one"
        )
    return SecretBox(_read_or_create_key_file(path))


def _read_or_create_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
