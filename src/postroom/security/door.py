"""The service's door: login and API-token throttles, the client's address, and their counts.

One :class:`Door` per opened :class:`~postroom.app.Postroom`, found with :func:`door_of`,
so the Admin Studio, the API and ``/metrics`` of one service share it, while two
services in one process (tests) do not.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

from postroom.security.devices import DeviceCookies
from postroom.security.throttle import Limits, Throttle

if TYPE_CHECKING:
    from postroom.app import Postroom
    from postroom.settings import Settings

log = logging.getLogger("postroom.security")

DOORS = ("api", "studio")
UNKNOWN_ADDRESS = "unknown"
# A user name or token id in a log line is cut here: it is typed by a stranger.
_LOGGED_CHARS = 64


class Door:
    """Throttles of Studio logins and API tokens, and counts of what they did."""

    def __init__(self, settings: Settings, *, devices: DeviceCookies) -> None:
        limits = Limits(
            window=settings.auth_window_seconds,
            per_address=settings.auth_address_failures,
            per_subject=settings.auth_user_failures,
        )
        self.logins = Throttle(limits)
        self.tokens = Throttle(limits)
        self.devices = devices
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._throttled: Counter[tuple[str, str]] = Counter()
        self._too_large: Counter[str] = Counter()

    def failure(self, door: str) -> None:
        with self._lock:
            self._failures[door] += 1

    def throttled(self, door: str, action: str) -> None:
        with self._lock:
            self._throttled[door, action] += 1

    def too_large(self, door: str) -> None:
        with self._lock:
            self._too_large[door] += 1

    def metrics(self) -> Iterator[Metric]:
        with self._lock:
            failures = dict(self._failures)
            throttled = dict(self._throttled)
            too_large = dict(self._too_large)
        family = CounterMetricFamily(
            "postroom_auth_failures",
            "Failed Admin Studio logins (studio) and rejected API tokens (api)",
            labels=["door"],
        )
        for door in DOORS:
            family.add_metric([door], failures.get(door, 0))
        yield family
        family = CounterMetricFamily(
            "postroom_auth_throttled",
            "Attempts slowed down (delayed) or refused with 429 (refused) after failures",
            labels=["door", "action"],
        )
        for door in DOORS:
            for action in ("delayed", "refused"):
                family.add_metric([door, action], throttled.get((door, action), 0))
        yield family
        family = CounterMetricFamily(
            "postroom_requests_too_large",
            "Requests refused with 413: the body passed max_request_bytes",
            labels=["door"],
        )
        for door in DOORS:
            family.add_metric([door], too_large.get(door, 0))
        yield family


_doors: weakref.WeakKeyDictionary[Postroom, Door] = weakref.WeakKeyDictionary()
_doors_lock = threading.Lock()


def door_of(postroom: Postroom) -> Door:
    """The door of ``postroom``, made on first use from its settings."""
    with _doors_lock:
        door = _doors.get(postroom)
        if door is None:
            devices = DeviceCookies(postroom.secrets.derived_key("studio known devices"))
            door = _doors[postroom] = Door(postroom.settings, devices=devices)
        return door


class DoorCollector(Collector):
    """The door's counters (auth failures, throttled attempts, 413s) for ``/metrics``."""

    def __init__(self, postroom: Postroom) -> None:
        self._postroom = postroom

    def collect(self) -> Iterator[Metric]:
        return door_of(self._postroom).metrics()


def client_address(scope: Scope) -> str:
    """The client's address; an IPv6 client as its /64, the block one host usually holds."""
    client = scope.get("client")
    if not client:
        return UNKNOWN_ADDRESS
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:_LOGGED_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def shown(value: str) -> str:
    """A stranger-typed name fit for one log line: quoted, control characters escaped, cut."""
    cut = value[:_LOGGED_CHARS]
    return repr(cut) + ("…" if len(value) > _LOGGED_CHARS else "")
