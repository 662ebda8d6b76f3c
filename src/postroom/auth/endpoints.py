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
