"""Persistence of correspondence records."""

from __future__ import annotations

import threading

from sqlalchemy import Connection, delete, func, select

from postroom.correspondence.models import Correspondence
from postroom.correspondence.render import Renderer
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.records import Change, upsert

_FIELDS = ("name", "subject", "html", "text")


class CorrespondenceStore:
    """Reads and writes :class:`Correspondence` records."""

    def get(self, conn: Connection, name: str) -> Correspondence:
        row = conn.execute(
            select(tables.correspondence).where(tables.correspondence.c.name == name)
        ).first()
        if row is None:
            raise NotFoundError(f"no correspondence named {name!r}")
        return Correspondence.model_validate({k: row._mapping[k] for k in _FIELDS})

    def find(self, conn: Connection, name: str) -> Correspondence | None:
        try:
            return self.get(conn, name)
        except NotFoundError:
            return None

    def all(self, conn: Connection) -> dict[str, Correspondence]:
        rows = conn.execute(select(tables.correspondence).order_by(tables.correspondence.c.name))
        return {
            r.name: Correspondence.model_validate({k: r._mapping[k] for k in _FIELDS}) for r in rows
        }

    def version(self, conn: Connection) -> tuple[int, object]:
        """Changes whenever a record is added, changed or removed (for render caches)."""
        t = tables.correspondence
        row = conn.execute(select(func.count(), func.max(t.c.updated_at))).one()
        return int(row[0]), row[1]

    def put(self, conn: Connection, record: Correspondence) -> Change:
        current = self.find(conn, record.name)
        return upsert(
            conn,
            tables.correspondence,
            key=tables.correspondence.c.name,
            same=None if current is None else current == record,
            values={**record.model_dump(), "updated_at": utcnow()},
        )

    def delete(self, conn: Connection, name: str) -> None:
        t = tables.correspondence
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise NotFoundError(f"no correspondence named {name!r}")


class RendererCache:
    """One compiled renderer per version of the correspondence records."""

    def __init__(self, store: CorrespondenceStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version: tuple[int, object] | None = None
        self._renderer: Renderer | None = None

    def __call__(self, conn: Connection) -> Renderer:
        version = self._store.version(conn)
        with self._lock:
            if self._renderer is None or version != self._version:
                self._renderer = Renderer(self._store.all(conn))
                self._version = version
            return self._renderer
