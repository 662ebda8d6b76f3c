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
from collections.abc import Callable, Collection, Sequence
from urllib.parse import urlsplit

from postroom.errors import ConfigurationError, TransientDeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; the system resolver unless a caller brings one.
Lookup = Callable[[str, int], Sequence[str]]

# Cloud metadata services: the addresses and the names that lead to them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, Google Cloud, OpenStack, ...
        "169.254.170.2",  # AWS container credentials
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data"}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space: not "private" to Python
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 that a gateway turns into the IPv4 inside
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")
_HOW = "to allow it, add its host to POSTROOM_ALLOWED_ENDPOINT_HOSTS where Postroom runs"


def refused_address(address: IPAddress) -> str | None:
    """Why an endpoint may not be at ``address`` (a non-public range), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge it instead.
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return refused_address(inner)
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


def check_webhook_url(
    url: str, *, allowed: Collection[str], resolve: bool, lookup: Lookup | None = None
) -> str:
    """``url`` if events may be sent to it; else :class:`ConfigurationError` saying why.

    ``resolve``: also look the host up (with ``lookup``, else the system resolver) and refuse
    it when any address it resolves to is not public (before an attempt; saving does not
    depend on DNS). A name that does not resolve raises :class:`TransientDeliveryError`:
    DNS may recover, so the attempt is retried.
    """
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port
    except ValueError:  # a bad port or an unclosed "[" of an IPv6 address
        scheme = host = ""
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"webhook URL {url}: must be an absolute https:// URL")
    if host in {h.strip().lower().strip("[]").rstrip(".") for h in allowed}:
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
        addresses = _resolve(host, port or 443, lookup or _system_lookup)
    else:
        return url
    for address in addresses:
        why = refused_address(address)
        if why is not None:
            named = host if literal is not None else f"{host} resolves to {address}, which"
            raise ConfigurationError(f"webhook URL {url}: {named} is {why}; {_HOW}")
    return url


def _literal(host: str) -> IPAddress | None:
    """The address a host written as an IP means, legacy forms (``127.1``, ``0x7f.1``) too."""
    try:
        return ipaddress.ip_address(host.split("%", maxsplit=1)[0])
    except ValueError:
        pass
    # Resolvers and HTTP clients take inet_aton's shorthands (2130706433 is 127.0.0.1).
    if any(c.isdigit() for c in host) and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _resolve(host: str, port: int, lookup: Lookup) -> list[IPAddress]:
    try:
        # A scoped IPv6 address ("fe80::1%eth0") names its interface after a "%".
        found = [ipaddress.ip_address(str(a).split("%", maxsplit=1)[0]) for a in lookup(host, port)]
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise TransientDeliveryError(f"cannot resolve {host} ({why})") from None
    if not found:
        raise TransientDeliveryError(f"cannot resolve {host} (no addresses)")
    return found


def _system_lookup(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
