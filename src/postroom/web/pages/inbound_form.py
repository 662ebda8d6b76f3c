"""The inbound part of the account form: the mailbox an account reads, as form fields.

Field names carry an ``inbound_`` prefix so they never meet the SMTP fields of the same
form. The password is write-only like the account's own: an empty field keeps the
stored one, unless the form asks to remove it or switches to OAuth (a profile or Graph).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from postroom.inbound.settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AfterIngest,
    InboundProtocol,
    InboundSecurity,
    InboundSettings,
)
from postroom.web import forms

TEXT_FIELDS = (
    "protocol", "host", "port", "security", "user_id", "auth_profile", "tls_min_version",
    "folder", "after", "move_to", "poll_seconds", "max_message_bytes",
)  # fmt: skip
PREFIX = "inbound_"
_DEFAULTED = (
    "port", "security", "tls_min_version", "folder", "after", "poll_seconds", "max_message_bytes",
)  # fmt: skip

BLANK: dict[str, Any] = {
    "protocol": "",
    "host": "",
    "port": "",
    "security": InboundSecurity.TLS.value,
    "user_id": "",
    "auth_profile": "",
    "tls_min_version": "1.2",
    "folder": "INBOX",
    "after": AfterIngest.SEEN.value,
    "move_to": "",
    "poll_seconds": "30",
    "max_message_bytes": str(DEFAULT_MAX_MESSAGE_BYTES),
    "truststore": "",
    "allow_insecure_auth": False,
}


def choices() -> dict[str, list[str]]:
    """The options of the inbound selects."""
    return {
        "inbound_protocols": [p.value for p in InboundProtocol],
        "inbound_securities": [s.value for s in InboundSecurity],
        "inbound_afters": [a.value for a in AfterIngest],
    }


def _number(value: float) -> str:
    return f"{value:g}"


def values(inbound: InboundSettings | None) -> dict[str, Any]:
    """The inbound settings as form values (the password is left out on purpose)."""
    if inbound is None:
        return dict(BLANK)
    return {
        "protocol": inbound.protocol.value,
        "host": inbound.host or "",
        "port": "" if inbound.port is None else str(inbound.port),
        "security": inbound.security.value,
        "user_id": inbound.user_id or "",
        "auth_profile": inbound.auth_profile or "",
        "tls_min_version": inbound.tls_min_version,
        "folder": inbound.folder,
        "after": inbound.after.value,
        "move_to": inbound.move_to or "",
        "poll_seconds": _number(inbound.poll_seconds),
        "max_message_bytes": str(inbound.max_message_bytes),
        "truststore": inbound.truststore or "",
        "allow_insecure_auth": inbound.allow_insecure_auth,
    }


def posted(form: FormData) -> dict[str, Any]:
    """The inbound fields as typed, to validate and to show again on a refusal."""
    typed: dict[str, Any] = {name: forms.text(form, PREFIX + name) for name in TEXT_FIELDS}
    typed["truststore"] = forms.raw(form, PREFIX + "truststore").strip()
    typed["allow_insecure_auth"] = forms.checked(form, PREFIX + "allow_insecure_auth")
    return typed


def record(
    typed: dict[str, Any], existing: InboundSettings | None, *, password: str, clear: bool
) -> dict[str, Any] | None:
    """The account's ``inbound`` section from the form; None when no protocol is chosen.

    Validated with the account (by :class:`InboundSettings`), so a refusal names the
    field as ``inbound.host`` like ``postroom apply`` does.
    """
    if not typed["protocol"]:
        return None
    data: dict[str, Any] = {
        name: typed[name] or None
        for name in ("protocol", "host", "user_id", "auth_profile", "move_to", "truststore")
    }
    # Fields left empty take their defaults rather than failing as "".
    data.update({name: typed[name] for name in _DEFAULTED if typed[name]})
    data["allow_insecure_auth"] = typed["allow_insecure_auth"]
    oauth = bool(typed["auth_profile"]) or typed["protocol"] == InboundProtocol.GRAPH
    if password:
        data["password"] = password
    elif existing is not None and existing.password is not None and not clear and not oauth:
        # An empty password field keeps the stored secret, which is never sent to the page.
        data["password"] = existing.password
    return data
