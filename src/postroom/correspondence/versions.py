"""A correspondence's saved versions: the history, one version, a diff, restore.

Every save keeps a numbered version (see :mod:`postroom.correspondence.store`) and every
outbox row names the version it was rendered from, so the history says which emails each
version sent. A deleted correspondence keeps its versions: they can still be read and
compared, and restoring one creates the record again (as its next version).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select

from postroom.correspondence.diffs import VersionDiff, diff_records
from postroom.correspondence.models import Correspondence
from postroom.correspondence.store import from_columns, load_images
from postroom.db import tables
from postroom.errors import NotFoundError
from postroom.records import Change

if TYPE_CHECKING:
    from postroom.app import Postroom

v = tables.correspondence_versions
c = tables.correspondence
o = tables.outbox


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One saved version: who saved it and when, and how many outbox emails it rendered."""

    name: str
    number: int
    saved_by: str
    saved_at: datetime
    note: str | None
    language: str
    subject: str | None
    emails: int
    current: bool


@dataclass(frozen=True, slots=True)
class History:
    """A correspondence's versions, newest first; ``current`` is None once it is deleted."""

    name: str
    current: int | None
    updated_by: str | None
    updated_at: datetime | None
    versions: tuple[VersionInfo, ...]

    @property
    def deleted(self) -> bool:
        return self.current is None

    @property
    def latest(self) -> int:
        return self.versions[0].number


@dataclass(frozen=True, slots=True)
class Restored:
    """What restoring version ``restored`` did: the change, and the version that is current."""

    name: str
    restored: int
    change: Change
    current: int


def _record_row(conn: Connection, name: str) -> tuple[int, str | None, datetime] | None:
    row = conn.execute(
        select(c.c.version, c.c.updated_by, c.c.updated_at).where(c.c.name == name)
    ).first()
    return None if row is None else (int(row.version), row.updated_by, row.updated_at)


def email_counts(conn: Connection, name: str) -> dict[int, int]:
    """How many outbox emails each version of ``name`` rendered, by version number."""
    rows = conn.execute(
        select(o.c.correspondence_version, func.count())
        .where(o.c.correspondence == name, o.c.correspondence_version.is_not(None))
        .group_by(o.c.correspondence_version)
    )
    return {int(number): int(n) for number, n in rows}


def history(conn: Connection, name: str) -> History:
    """Every version of ``name``, newest first (NotFoundError: it never had one)."""
    rows = list(
        conn.execute(
            select(v.c.number, v.c.saved_by, v.c.saved_at, v.c.note, v.c.language, v.c.subject)
            .where(v.c.name == name)
            .order_by(v.c.number.desc())
        )
    )
    record = _record_row(conn, name)
    if not rows:
        if record is not None:  # cannot happen after migration 0012; said plainly if it does
            raise NotFoundError(f"correspondence {name!r} has no saved versions")
        raise NotFoundError(f"no correspondence named {name!r}, nor any version of one")
    counts = email_counts(conn, name)
    current = None if record is None else record[0]
    versions = tuple(
        VersionInfo(
            name=name,
            number=int(r.number),
            saved_by=r.saved_by,
            saved_at=r.saved_at,
            note=r.note,
            language=r.language,
            subject=r.subject,
            emails=counts.get(int(r.number), 0),
            current=int(r.number) == current,
        )
        for r in rows
    )
    return History(
        name=name,
        current=current,
        updated_by=None if record is None else record[1],
        updated_at=None if record is None else record[2],
        versions=versions,
    )


def info(conn: Connection, name: str, number: int) -> VersionInfo:
    """The history line of version ``number`` of ``name``."""
    for found in history(conn, name).versions:
        if found.number == number:
            return found
    raise NotFoundError(f"correspondence {name!r} has no version {number}")


def version(conn: Connection, name: str, number: int) -> Correspondence:
    """Version ``number`` of ``name`` as the record it was, images included."""
    row = conn.execute(select(v).where(v.c.name == name, v.c.number == number)).first()
    if row is None:
        history(conn, name)  # a NotFoundError naming the record when it has no versions
        raise NotFoundError(f"correspondence {name!r} has no version {number}")
    return from_columns(name, row._mapping, load_images(conn, [row.images]))


def diff(conn: Connection, name: str, old: int, new: int | None = None) -> VersionDiff:
    """What changed from version ``old`` to ``new`` (default: the current, else the latest)."""
    if new is None:
        found = history(conn, name)
        new = found.current if found.current is not None else found.latest
    return diff_records(
        name, version(conn, name, old), version(conn, name, new), numbers=(old, new)
    )


def restore(postroom: Postroom, name: str, number: int, *, by: str) -> Restored:
    """Save version ``number``'s content as the next version, noted "restored from version n".

    Written as ``apply`` writes, so its templates are checked against today's sandbox and
    records; restoring what is current already is ``unchanged`` (no new version). A deleted
    correspondence is created again.
    """
    # Imported here: the writing path imports the correspondence package.
    from postroom.config.apply import write_records  # noqa: PLC0415

    with postroom.engine.connect() as conn:
        record = version(conn, name, number)
    report = write_records(
        postroom,
        {"correspondence": [record]},
        by=by,
        note=f"restored from version {number}",
    )
    change = report.changes[0][2]
    with postroom.engine.connect() as conn:
        now = _record_row(conn, name)
    return Restored(name=name, restored=number, change=change, current=0 if now is None else now[0])
