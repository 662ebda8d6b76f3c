"""Which URLs may receive webhook events (a guard against server-side request forgery).

Whoever may register an endpoint could otherwise make every agent POST into the network
it runs in: cloud metadata services, databases' HTTP ports, the admin pages of routers.
Endpoints must use https and a public address, unless whoever runs the process allows a
host (``POSTROOM_ALLOWED_ENDPOINT_HOSTS``, as for Graph URLs), which may then use http.
The check runs when an endpoint is saved (names as written, no DNS) and again before
every attempt with the addresses the name resolves to (a name may change its address).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from postroom.errors import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: the addresses and the names that lead to them.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space: not "private" to Python
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")
_HOW = "to allow it, add its host to POSTROOM_ALLOWED_ENDPOINT_HOSTS where Postroom runs"


def refused_address(address: IPAddress) -> str | None:
    """Why an endpoint may not be at ``address`` (a non-public range), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refused_address(address.ipv4_mapped)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a CGNAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for refused, why in checks if refused), None)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(url: str, host: str, port: int) -> list[IPAddress]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigurationError(f"webhook URL {url}: cannot resolve {host} ({why})") from None
    addresses = []
    for *_, sockaddr in found:
        # A scoped IPv6 address ("fe80::1%eth0") names its interface after a "%".
        addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
    return addresses


def check_webhook_url(url: str, *, allowed: Collection[str], resolve: bool) -> str:
    """``url`` if events may be sent to it; else :class:`ConfigurationError` saying why.

    ``resolve``: also look the host up and refuse it when any address it resolves to is
    not public (before an attempt; saving does not depend on DNS).
    """
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port
    except ValueError:  # a bad port or an unclosed "[" of an IPv6 address
        scheme = host = ""
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"webhook URL {url}: must be an absolute https:// URL")
    if host in {h.strip().lower() for h in allowed}:
        return url  # allowed by whoever runs the process, http included
    if scheme != "https":
        raise ConfigurationError(
            f"webhook URL {url}: must use https:// (http only for a host listed in "
            "POSTROOM_ALLOWED_ENDPOINT_HOSTS where Postroom runs)"
        )
    if host in METADATA_NAMES:
        raise ConfigurationError(f"webhook URL {url}: {host} is a cloud metadata name; {_HOW}")
    if host == _LOCAL_NAMES[0] or host.endswith(_LOCAL_NAMES[1:]):
        raise ConfigurationError(f"webhook URL {url}: {host} is a local name; {_HOW}")
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    elif resolve:
        addresses = _resolve(url, host, port or 443)
    else:
        return url
    for address in addresses:
        why = refused_address(address)
        if why is not None:
            named = host if literal is not None else f"{host} resolves to {address}, which"
            raise ConfigurationError(f"webhook URL {url}: {named} is {why}; {_HOW}")
    return url
