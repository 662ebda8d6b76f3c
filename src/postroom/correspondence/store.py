"""Persistence of correspondence records, each save kept as a numbered version.

Images are stored once by their SHA-256 (``correspondence_images``); a record and each of
its versions name them, so an old version still shows the images it was sent with.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Insert, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from postroom.correspondence.models import Correspondence, InlineImage
from postroom.correspondence.render import Renderer
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.records import Change, upsert

t = tables.correspondence
v = tables.correspondence_versions
i = tables.correspondence_images

SYSTEM = "system"


def image_refs(images: Mapping[str, InlineImage]) -> dict[str, dict[str, Any]]:
    """The JSON that names a record's images: filename, type, SHA-256 and size each."""
    return {
        cid: {
            "filename": image.filename,
            "content_type": image.content_type,
            "sha256": hashlib.sha256(image.content).hexdigest(),
            "size": len(image.content),
        }
        for cid, image in images.items()
    }


def snapshot(record: Correspondence) -> dict[str, Any]:
    """The columns a record and its versions share (images as references)."""
    return {
        "language": record.language,
        "subject": record.subject,
        "html": record.html,
        "text": record.text,
        "translations": {tag: tr.model_dump(mode="json") for tag, tr in record.translations.items()}
        or None,
        "images": image_refs(record.images) or None,
    }


def load_images(conn: Connection, refs: Iterable[Mapping[str, Any] | None]) -> dict[str, bytes]:
    """The bytes of every image the ``refs`` name, by SHA-256."""
    wanted = {ref["sha256"] for refs_ in refs if refs_ for ref in refs_.values()}
    if not wanted:
        return {}
    rows = conn.execute(select(i.c.sha256, i.c.content).where(i.c.sha256.in_(sorted(wanted))))
    return {sha: bytes(content) for sha, content in rows}


def from_columns(name: str, row: Mapping[Any, Any], blobs: Mapping[str, bytes]) -> Correspondence:
    """A record (or a version of one) from its stored columns and its images' bytes."""
    images = {
        cid: {
            "filename": ref["filename"],
            "content_type": ref["content_type"],
            "content": blobs[ref["sha256"]],
        }
        for cid, ref in (row["images"] or {}).items()
    }
    return Correspondence.model_validate(
        {
            "name": name,
            "subject": row["subject"],
            "html": row["html"],
            "text": row["text"],
            "language": row["language"],
            "translations": row["translations"] or {},
            "images": images,
        }
    )


class CorrespondenceStore:
    """Reads and writes :class:`Correspondence` records; every change is a new version."""

    def get(self, conn: Connection, name: str) -> Correspondence:
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no correspondence named {name!r}")
        return from_columns(row.name, row._mapping, load_images(conn, [row.images]))

    def find(self, conn: Connection, name: str) -> Correspondence | None:
        try:
            return self.get(conn, name)
        except NotFoundError:
            return None

    def all(self, conn: Connection) -> dict[str, Correspondence]:
        rows = list(conn.execute(select(t).order_by(t.c.name)))
        blobs = load_images(conn, [r.images for r in rows])
        return {r.name: from_columns(r.name, r._mapping, blobs) for r in rows}

    def versions(self, conn: Connection) -> dict[str, int]:
        """The current version number of every record."""
        return {name: int(n) for name, n in conn.execute(select(t.c.name, t.c.version))}

    def stamp(self, conn: Connection) -> tuple[int, object]:
        """Changes whenever a record is added, changed or removed (for render caches)."""
        row = conn.execute(select(func.count(), func.max(t.c.updated_at))).one()
        return int(row[0]), row[1]

    def put(
        self, conn: Connection, record: Correspondence, *, by: str = SYSTEM, note: str | None = None
    ) -> Change:
        """Insert or update; a change is saved as the next version, by ``by``."""
        current = conn.execute(select(t.c.version).where(t.c.name == record.name)).first()
        same = None if current is None else self.get(conn, record.name) == record
        if same:
            return "unchanged"
        # Numbered after every version kept, a deleted record's included: a name that comes
        # back goes on from where its history ended.
        last = conn.scalar(select(func.max(v.c.number)).where(v.c.name == record.name))
        number = int(last or 0) + 1
        now = utcnow()
        self._keep_images(conn, record.images.values(), now=now)
        columns = snapshot(record)
        change = upsert(
            conn,
            t,
            key=t.c.name,
            same=same,
            values={
                "name": record.name,
                **columns,
                "version": number,
                "updated_by": by,
                "updated_at": now,
            },
        )
        conn.execute(
            insert(v).values(
                name=record.name, number=number, **columns, saved_by=by, saved_at=now, note=note
            )
        )
        return change

    def delete(self, conn: Connection, name: str) -> None:
        """Delete the record; its versions stay, as proof of what was sent."""
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise NotFoundError(f"no correspondence named {name!r}")

    @staticmethod
    def _keep_images(conn: Connection, images: Iterable[InlineImage], *, now: object) -> None:
        wanted = {hashlib.sha256(img.content).hexdigest(): img for img in images}
        if not wanted:
            return
        stored = set(conn.scalars(select(i.c.sha256).where(i.c.sha256.in_(sorted(wanted)))))
        rows = [
            {
                "sha256": sha,
                "content_type": img.content_type,
                "size": len(img.content),
                "content": img.content,
                "created_at": now,
            }
            for sha, img in wanted.items()
            if sha not in stored
        ]
        if rows:
            # Two writers saving the same new image at once both find it missing; the
            # second insert is then skipped, not an error (the bytes are the same by hash).
            conn.execute(_insert_missing(conn), rows)


def _insert_missing(conn: Connection) -> Insert:
    """An image insert that skips a SHA-256 stored meanwhile by another transaction."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(i).on_conflict_do_nothing(index_elements=[i.c.sha256])
    if conn.dialect.name == "sqlite":
        return sqlite.insert(i).on_conflict_do_nothing(index_elements=[i.c.sha256])
    return insert(i)


class RendererCache:
    """One compiled renderer per version of the correspondence records."""

    def __init__(self, store: CorrespondenceStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._stamp: tuple[int, object] | None = None
        self._renderer: Renderer | None = None

    def __call__(self, conn: Connection) -> Renderer:
        stamp = self._store.stamp(conn)
        with self._lock:
            if self._renderer is None or stamp != self._stamp:
                self._renderer = Renderer(
                    self._store.all(conn), versions=self._store.versions(conn)
                )
                self._stamp = stamp
            return self._renderer
