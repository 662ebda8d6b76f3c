"""Advanced parameters: the JavaMail-style names that users migrating from Pega bring.

Parsing is pure: a mapping of strings in, a typed :class:`SmtpOptions` out.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from postroom.errors import UnknownParameterError

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """Typed form of an account's advanced parameters."""

    connect_timeout: float | None = None
    read_timeout: float | None = None
    local_hostname: str | None = None
    disabled_auth: frozenset[str] = field(default_factory=frozenset)
    tls_versions: tuple[str, ...] = ()
    pipelining: bool = True  # used when the server offers PIPELINING (RFC 2920)


def _millis(key: str, raw: str) -> float:
    try:
        value = int(raw)
    except ValueError:
        raise UnknownParameterError(
            f"{key} takes milliseconds as a whole number, not {raw!r}"
        ) from None
    if not 0 < value <= 600_000:
        raise UnknownParameterError(f"{key} must be between 1 and 600000 milliseconds")
    return value / 1000


def _flag(key: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise UnknownParameterError(f"{key} takes true or false, not {raw!r}")
    return lowered == "true"


def _protocols(key: str, raw: str) -> tuple[str, ...]:
    names = raw.replace(",", " ").split()
    versions = []
    for name in names:
        version = name.removeprefix("TLSv")
        if version not in TLS_VERSIONS:
            raise UnknownParameterError(
                f"{key}: {name!r} is not allowed; use TLSv1.2 and/or TLSv1.3 "
                "(older protocols are insecure and refused)"
            )
        versions.append(version)
    if not versions:
        raise UnknownParameterError(f"{key} names no protocol")
    return tuple(sorted(set(versions)))


def _set_timeout(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
    return replace(o, read_timeout=_millis(k, v))


def _set_connect(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
    return replace(o, connect_timeout=_millis(k, v))


def _set_localhost(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
    name = v.strip()
    if not name or any(c.isspace() or ord(c) < 32 for c in name):
        raise UnknownParameterError(f"{k} must be a single host name")
    return replace(o, local_hostname=name)


def _disable(mechanism: str) -> Callable[[SmtpOptions, str, str], SmtpOptions]:
    def apply(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
        if _flag(k, v):
            return replace(o, disabled_auth=o.disabled_auth | {mechanism})
        return replace(o, disabled_auth=o.disabled_auth - {mechanism})

    return apply


def _set_protocols(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
    return replace(o, tls_versions=_protocols(k, v))


def _set_pipelining(o: SmtpOptions, k: str, v: str) -> SmtpOptions:
    return replace(o, pipelining=_flag(k, v))


_PARSERS: dict[str, Callable[[SmtpOptions, str, str], SmtpOptions]] = {
    "mail.smtp.timeout": _set_timeout,
    "mail.smtp.connectiontimeout": _set_connect,
    "mail.smtp.localhost": _set_localhost,
    "mail.smtp.auth.plain.disable": _disable("plain"),
    "mail.smtp.auth.login.disable": _disable("login"),
    "mail.smtp.ssl.protocols": _set_protocols,
    # Postroom's own (JavaMail has no pipelining): false sends one command at a time.
    "mail.smtp.pipelining": _set_pipelining,
}

KNOWN_PARAMETERS: tuple[str, ...] = tuple(sorted(_PARSERS))


def parse_advanced(params: Mapping[str, str]) -> SmtpOptions:
    """Parse advanced parameters, refusing unknown names with the list of known ones."""
    options = SmtpOptions()
    for key, raw in params.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise UnknownParameterError(
                f"unknown advanced parameter {key!r}; known parameters: "
                + ", ".join(KNOWN_PARAMETERS)
            )
        options = parser(options, key, str(raw))
    return options
