"""Failure throttling for Studio logins and API tokens: a growing delay, then a refusal.

Failures are counted per client address, per subject (a user name or an API token id)
and per pair of the two, in fixed windows that start with the first failure and expire
``window`` seconds later. Below half of a limit a failure costs nothing; past it each
attempt waits twice as long as the one before (capped); at the limit attempts are
refused until the window expires. Refused attempts are not counted, so hammering
cannot stretch a lockout: a real user gets back in once the window passes.

The per-address limit is the stricter one: one address guessing is stopped early,
while a user targeted from many addresses is locked only after the looser per-user
limit, and only for the rest of the window. A success forgets the failures of that
subject from that address (the pair's count is taken off both totals), so a user who
mistyped, then got in, starts afresh; failures against other users stay counted.

Known devices (OWASP's "device cookies"): an attempt may name a *device*, a browser
that logged in as that subject before and proves it with a signed cookie
(:mod:`postroom.security.devices`). Such an attempt is not held back by the
per-subject count, which strangers can fill from many addresses; it is counted and
limited per device instead (with the per-address limit) and, as always, per address.
Its failures do not add to the subject's count either. So a distributed guesser can
lock a user out only on browsers the user never logged in from: a brand-new browser of
the real user is refused like any stranger until the window ends.

Kept in memory, per process, on purpose: a failed guess then costs no database write
(a flood of failures cannot become a flood of writes), and the check adds no query to
every API request. With N service processes an attacker gets at most N times the
budget, still a few dozen guesses per window against argon2 hashes, and API token
secrets have 256 bits that no budget can guess. A shared table would need a write per
failure and a schema change for little gain. Each table holds at most ``capacity``
entries; the least recently touched go first, so many addresses cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# Subjects are typed by strangers (any user name): long ones are kept as a digest.
_LONGEST_KEPT = 128


@dataclass(frozen=True, slots=True)
class Limits:
    """How many failures an address and a subject may have in a window, and the delays."""

    window: float
    per_address: int
    per_subject: int
    first_delay: float = 0.25
    max_delay: float = 5.0
    capacity: int = 10_000

    def delay(self, failures: int, limit: int) -> float:
        """The wait before attempt number ``failures`` (counting it) under ``limit``."""
        free = limit // 2
        if failures <= free:
            return 0.0
        return float(min(self.max_delay, self.first_delay * 2.0 ** (failures - free - 1)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """An attempt's fate: refused for ``retry_after`` seconds, else let in after ``delay``."""

    retry_after: float | None
    delay: float

    @property
    def refused(self) -> bool:
        return self.retry_after is not None

    @property
    def retry_after_header(self) -> str:
        """Whole seconds to wait, at least 1 (the ``Retry-After`` value)."""
        return str(max(1, math.ceil(self.retry_after or 0)))


@dataclass(slots=True)
class _Count:
    failures: int
    expires: float


class _Table:
    """Failure counts by key that expire, with at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, _Count] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> _Count | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            del self._entries[key]
            return None
        return entry

    def add(self, key: Hashable, now: float, window: float) -> int:
        entry = self.get(key, now)
        if entry is None:
            entry = self._entries[key] = _Count(0, now + window)
        entry.failures += 1
        self._entries.move_to_end(key)
        self._trim(now)
        return entry.failures

    def take(self, key: Hashable, failures: int, now: float) -> None:
        entry = self.get(key, now)
        if entry is None:
            return
        entry.failures -= failures
        if entry.failures <= 0:
            del self._entries[key]

    def pop(self, key: Hashable, now: float) -> int:
        entry = self.get(key, now)
        if entry is None:
            return 0
        del self._entries[key]
        return entry.failures

    def _trim(self, now: float) -> None:
        # The front holds the least recently touched entries: expired ones go
        # first, then, past capacity, the oldest live ones.
        while self._entries:
            key, first = next(iter(self._entries.items()))
            if first.expires > now and len(self._entries) <= self._capacity:
                return
            del self._entries[key]


def _subject_key(subject: str) -> str:
    if len(subject) <= _LONGEST_KEPT:
        return subject
    return "sha256:" + hashlib.sha256(subject.encode()).hexdigest()


class Throttle:
    """Counts failures by address, subject and device, and decides on each new attempt."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses = _Table(limits.capacity)
        self._subjects = _Table(limits.capacity)
        self._devices = _Table(limits.capacity)
        self._pairs = _Table(limits.capacity)

    def admit(
        self,
        *,
        subject: str | None,
        address: str,
        reserve: bool = False,
        device: str | None = None,
    ) -> Verdict:
        """May an attempt go ahead, and after what delay.

        With ``reserve`` the attempt counts as a failure at once (a success takes it
        back): parallel attempts then cannot all slip under the limit together. With
        ``device`` (a known device of ``subject``) the device's count stands in for the
        subject's.
        """
        limits = self.limits
        with self._lock:
            now = self._clock()
            address_count = self._addresses.get(address, now)
            second, second_limit = self._second(subject, device, now)
            waits = [
                count.expires - now
                for count, limit in ((address_count, limits.per_address), (second, second_limit))
                if count is not None and count.failures >= limit
            ]
            if waits:
                return Verdict(retry_after=max(waits), delay=0.0)
            if reserve:
                by_address, by_second = self._record(subject, address, device, now)
            else:
                by_address = (address_count.failures if address_count else 0) + 1
                by_second = (second.failures if second else 0) + 1
        delay = limits.delay(by_address, limits.per_address)
        if subject is not None:
            delay = max(delay, limits.delay(by_second, second_limit))
        return Verdict(retry_after=None, delay=delay)

    def failed(self, *, subject: str | None, address: str, device: str | None = None) -> None:
        """Count a failure (when it was not reserved by :meth:`admit`)."""
        with self._lock:
            self._record(subject, address, device, self._clock())

    def succeeded(self, *, subject: str, address: str, device: str | None = None) -> None:
        """Forget the failures of ``subject`` from ``address`` (and ``device``)."""
        key = _subject_key(subject)
        with self._lock:
            now = self._clock()
            failures = self._pairs.pop((key, address, device), now)
            if failures:
                self._second_table(device).take(device or key, failures, now)
                self._addresses.take(address, failures, now)

    def release(self, *, subject: str, address: str, device: str | None = None) -> None:
        """Take back one attempt :meth:`admit` reserved that ended neither way (an error)."""
        key = _subject_key(subject)
        with self._lock:
            now = self._clock()
            self._pairs.take((key, address, device), 1, now)
            self._second_table(device).take(device or key, 1, now)
            self._addresses.take(address, 1, now)

    def size(self) -> int:
        """Entries held in all tables (bounded by four times the capacity)."""
        with self._lock:
            return (
                len(self._addresses) + len(self._subjects) + len(self._devices) + len(self._pairs)
            )

    def _second_table(self, device: str | None) -> _Table:
        return self._subjects if device is None else self._devices

    def _second(
        self, subject: str | None, device: str | None, now: float
    ) -> tuple[_Count | None, int]:
        """The count beside the address's that limits this attempt, and its limit."""
        if subject is None:
            return None, self.limits.per_subject
        if device is not None:
            return self._devices.get(device, now), self.limits.per_address
        return self._subjects.get(_subject_key(subject), now), self.limits.per_subject

    def _record(
        self, subject: str | None, address: str, device: str | None, now: float
    ) -> tuple[int, int]:
        window = self.limits.window
        by_address = self._addresses.add(address, now, window)
        if subject is None:
            return by_address, 0
        key = _subject_key(subject)
        self._pairs.add((key, address, device), now, window)
        return by_address, self._second_table(device).add(device or key, now, window)
