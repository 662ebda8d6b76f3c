"""Variable envelope senders (VERP): a token in the bounce address names the email.

The token is random (100 bits), lower-case base32 so that a relay that folds the case
of local parts does not change it, and only letters and digits so that it needs no
quoting in an address or in a DSN ENVID.
"""

from __future__ import annotations

import base64
import re
import secrets

TOKEN_LENGTH = 20
_TOKEN = re.compile(r"[a-z2-7]{20}")


def new_token() -> str:
    """A fresh token for one outbox row."""
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()[:TOKEN_LENGTH]


def is_token(value: str) -> bool:
    return bool(_TOKEN.fullmatch(value))


def verp_address(bounce_address: str, token: str) -> str:
    """``bounces@acme.example`` and a token → ``bounces+<token>@acme.example``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


def token_in(address: str, bounce_address: str | None = None) -> str | None:
    """The token of a VERP address, or None; with ``bounce_address``, only for that one."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    base, plus, token = local.rpartition("+")
    token = token.lower()
    if not plus or not is_token(token):
        return None
    if bounce_address is not None:
        b_local, _, b_domain = bounce_address.rpartition("@")
        if base.lower() != b_local.lower() or domain.lower() != b_domain.lower():
            return None
    return token
