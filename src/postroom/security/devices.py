"""Known-device cookies: a browser's signed proof that it logged in as a user before.

OWASP's answer to lockout attacks ("device cookies"): on a successful Studio login the
browser gets a long-lived, HttpOnly cookie binding the user name to a random device id,
signed with HMAC-SHA256 under a key derived from the service's secret key (the one that
encrypts secrets at rest; no new secret is stored). A later login for that user that
presents it is throttled per device rather than per user (see
:mod:`postroom.security.throttle`), so strangers failing for the user from many
addresses cannot lock out a browser the user has logged in from.

Nothing is kept on the server: a cookie is valid while its signature checks and it is
younger than :data:`DEVICE_LIFETIME`. Changing the secret key forgets every device.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

DEVICE_LIFETIME = 180 * 24 * 3600  # seconds: a browser used twice a year stays known
_VERSION = "d1"
_ID_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DeviceCookies:
    """Issues and checks known-device cookie values under one key."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def issue(self, username: str, *, device: str | None = None) -> str:
        """A cookie value binding ``username`` to ``device`` (a new id when None), signed now."""
        device = device or _b64(secrets.token_bytes(_ID_BYTES))
        payload = f"{_VERSION}.{_b64(username.encode('utf-8', 'surrogatepass'))}.{device}."
        payload += str(int(self._clock()))
        return f"{payload}.{self._mac(payload)}"

    def device_of(self, value: str | None, *, username: str) -> str | None:
        """The device id ``value`` proves for ``username``, or None (absent, forged, expired)."""
        if not value or len(value) > 512:
            return None
        payload, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(payload).encode()):
            return None
        try:
            version, user, device, issued = payload.split(".")
            named = _unb64(user)
            age = self._clock() - int(issued)
        except (ValueError, binascii.Error):
            return None
        if version != _VERSION or not 0 <= age <= DEVICE_LIFETIME:
            return None
        if not hmac.compare_digest(named, username.encode("utf-8", "surrogatepass")):
            return None
        return device

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii", "replace"), hashlib.sha256)
        return _b64(digest.digest())
