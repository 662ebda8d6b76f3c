"""Signing keystores: the keys and certificates accounts use to sign their mail (S/MIME)."""

from postroom.keystores.inspection import KeystoreInfo, describe
from postroom.keystores.loading import (
    KeyEntry,
    KeystoreKind,
    SigningKey,
    detect_kind,
    list_aliases,
    load_keystore,
)

__all__ = [
    "KeyEntry",
    "KeystoreInfo",
    "KeystoreKind",
    "SigningKey",
    "describe",
    "detect_kind",
    "list_aliases",
    "load_keystore",
]
