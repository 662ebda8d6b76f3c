"""What a composing process is given and answers: picklable, read once by the caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postroom.accounts import EmailAccount, Resolution
from postroom.correspondence.models import Correspondence
from postroom.outbox.models import NewEmail


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a batch's composition reads from the database, looked up by the caller."""

    snapshot: str  # which version of the correspondence records; a process compiles it once
    records: Mapping[str, Correspondence]
    versions: Mapping[str, int]  # each record's version number, kept on the rows
    time_limit: float
    account: EmailAccount
    resolution: Resolution
    class_name: str
    class_group: str | None


@dataclass(frozen=True, slots=True)
class Shard:
    """The emails of requests ``start``, ``start + 1``, … up to the first that failed."""

    start: int
    emails: tuple[tuple[NewEmail, ...], ...]  # the rows of each request composed
    failed: bool  # the request after the last composed one did not compose

    @property
    def failed_at(self) -> int:
        """The index of the request that failed (meaningful when ``failed``)."""
        return self.start + len(self.emails)


def shards(count: int, *, processes: int) -> Sequence[range]:
    """``range(count)`` in pieces: a few per process, so that a slow one does not hold the rest."""
    size = max(25, -(-count // (processes * 4)))
    return [range(s, min(s + size, count)) for s in range(0, count, size)]
