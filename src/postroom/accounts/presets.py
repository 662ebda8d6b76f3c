"""Provider presets: choosing a provider fills host, port and security."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Provider(StrEnum):
    CUSTOM = "custom"
    OFFICE365 = "office365"
    GMAIL = "gmail"
    YAHOO = "yahoo"
    OUTLOOK = "outlook"
    ICLOUD = "icloud"
    ZOHO = "zoho"


class Security(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS from the first byte (port 465)


@dataclass(frozen=True, slots=True)
class Preset:
    """The SMTP submission settings a provider documents."""

    host: str
    port: int
    security: Security


PRESETS: dict[Provider, Preset] = {
    Provider.OFFICE365: Preset("smtp.office365.com", 587, Security.STARTTLS),
    Provider.GMAIL: Preset("smtp.gmail.com", 587, Security.STARTTLS),
    Provider.YAHOO: Preset("smtp.mail.yahoo.com", 465, Security.TLS),
    Provider.OUTLOOK: Preset("smtp-mail.outlook.com", 587, Security.STARTTLS),
    Provider.ICLOUD: Preset("smtp.mail.me.com", 587, Security.STARTTLS),
    Provider.ZOHO: Preset("smtp.zoho.com", 465, Security.TLS),
}


def preset_warnings(
    provider: Provider, *, host: str | None, port: int | None, security: Security
) -> list[str]:
    """Warnings for each setting that departs from the provider's preset."""
    preset = PRESETS.get(provider)
    if preset is None:
        return []
    warnings = []
    for field, given, expected in (
        ("host", host, preset.host),
        ("port", port, preset.port),
        ("security", security, preset.security),
    ):
        if given != expected:
            warnings.append(
                f"{field} {given} departs from the {provider} preset ({expected}); "
                "keep it only if your administrator told you so"
            )
    return warnings
