"""Which hosts may receive a client secret, an access token or an email.

A profile's token endpoint receives the client secret and a Graph URL receives the
tokens and every email; whoever can edit records must not be able to send them
anywhere. Only Microsoft's hosts are allowed, unless whoever runs the process
allows another (``POSTROOM_ALLOWED_ENDPOINT_HOSTS``), as the tests do for loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from postroom.errors import ConfigurationError

MICROSOFT_HOSTS = frozenset(
    {
        # Sign-in (global, US Government, China operated by 21Vianet)
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        # Graph
        "graph.microsoft.com",
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "microsoftgraph.chinacloudapi.cn",
        # Upload sessions for large attachments are served by Outlook's hosts.
        "outlook.office.com",
        "outlook.office365.com",
        "outlook.office365.us",
        "partner.outlook.cn",
    }
)


# SMTP submission hosts that take Microsoft's access tokens (AUTH XOAUTH2).
MICROSOFT_SMTP_HOSTS = frozenset(
    {"smtp.office365.com", "smtp-mail.outlook.com", "outlook.office365.com"}
)


def check_token_host(host: str, *, encrypted: bool, allowed: Collection[str], what: str) -> str:
    """``host`` if an access token may be sent to it over SMTP; else why not."""
    name = host.lower()
    if name not in MICROSOFT_SMTP_HOSTS and name not in {h.lower() for h in allowed}:
        raise ConfigurationError(
            f"{what} {host} is not a Microsoft SMTP host and would receive the profile's access "
            "tokens; to use it anyway, add it to POSTROOM_ALLOWED_ENDPOINT_HOSTS where "
            "Postroom runs"
        )
    if not encrypted and not is_loopback(name):
        raise ConfigurationError(f"{what} {host}: a token travels unencrypted only on loopback")
    return host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, *, allowed: Collection[str], what: str) -> str:
    """``url`` if its host may be used; else :class:`ConfigurationError` saying how to allow it."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in MICROSOFT_HOSTS:
        if parts.scheme != "https":
            raise ConfigurationError(f"{what} {url} must use https://")
        return url
    if host not in {h.lower() for h in allowed}:
        raise ConfigurationError(
            f"{what} {url}: {host or 'the host'} is not a Microsoft host; to use it anyway, "
            "add it to POSTROOM_ALLOWED_ENDPOINT_HOSTS where Postroom runs"
        )
    if parts.scheme != "https" and not is_loopback(host):
        # Plain HTTP only where it cannot leave the machine: secrets travel on it.
        raise ConfigurationError(f"{what} {url} must use https:// (http only on loopback)")
    return url
