"""Which URLs may receive webhook events (a guard against server-side request forgery).

Whoever may register an endpoint could otherwise make every agent POST into the network
it runs in: cloud metadata services, databases' HTTP ports, the admin pages of routers.
Endpoints must use https and a public address, unless whoever runs the process allows a
host (``POSTROOM_ALLOWED_ENDPOINT_HOSTS``, as for Graph URLs), which may then use http.
The check runs when an endpoint is saved and before every attempt (names as written, no
DNS); a delivery then resolves the name itself when it connects and connects only to
addresses that pass (see ``pinned``): a name that answered one address to a check and
another to the connection (DNS rebinding) could otherwise reach inside.
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
    it when any address it resolves to is not public. Saving does not depend on DNS, and a
    delivery checks the addresses when it connects (:func:`endpoint_addresses`). A name that
    does not resolve raises :class:`TransientDeliveryError`: DNS may recover.
    """
    is_allowed = _judge(url, allowed)[3]
    if resolve and not is_allowed:
        endpoint_addresses(url, allowed=allowed, lookup=lookup)
    return url


def endpoint_addresses(
    url: str, *, allowed: Collection[str], lookup: Lookup | None = None
) -> list[IPAddress]:
    """The addresses a request to ``url`` may connect to, in the resolver's order.

    Raises as :func:`check_webhook_url` with ``resolve``: one refused address refuses the
    host. A host allowed where Postroom runs may resolve to any address.
    """
    host, port, literal, is_allowed = _judge(url, allowed)
    addresses = [literal] if literal is not None else _resolve(host, port, lookup or _system_lookup)
    for address in () if is_allowed else addresses:
        why = refused_address(address)
        if why is not None:
            named = host if literal is not None else f"{host} resolves to {address}, which"
            raise ConfigurationError(f"webhook URL {url}: {named} is {why}; {_HOW}")
    return addresses


def _judge(url: str, allowed: Collection[str]) -> tuple[str, int, IPAddress | None, bool]:
    """Host, port, literal address of ``url`` and whether its host is allowed; or raise."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port
    except ValueError:  # a bad port or an unclosed "[" of an IPv6 address
        scheme = host = ""
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"webhook URL {url}: must be an absolute https:// URL")
    port = port or (443 if scheme == "https" else 80)
    literal = _literal(host)
    if host in {h.strip().lower().strip("[]").rstrip(".") for h in allowed}:
        return host, port, literal, True  # allowed by whoever runs the process, http included
    if scheme != "https":
        raise ConfigurationError(
            f"webhook URL {url}: must use https:// (http only for a host listed in "
            "POSTROOM_ALLOWED_ENDPOINT_HOSTS where Postroom runs)"
        )
    if host in METADATA_NAMES:
        raise ConfigurationError(f"webhook URL {url}: {host} is a cloud metadata name; {_HOW}")
    if host == _LOCAL_NAMES[0] or host.endswith(_LOCAL_NAMES[1:]):
        raise ConfigurationError(f"webhook URL {url}: {host} is a local name; {_HOW}")
    if literal is not None and (why := refused_address(literal)) is not None:
        raise ConfigurationError(f"webhook URL {url}: {host} is {why}; {_HOW}")
    return host, port, literal, False


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
