"""Persistence of operators."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.operators.models import Operator
from postroom.records import Change, upsert


class OperatorStore:
    """Reads and writes :class:`Operator` records."""

    def get(self, conn: Connection, operator_id: str) -> Operator:
        row = conn.execute(
            select(tables.operators).where(tables.operators.c.id == operator_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no operator with id {operator_id!r}")
        return Operator.model_validate({k: row._mapping[k] for k in Operator.model_fields})

    def find(self, conn: Connection, operator_id: str) -> Operator | None:
        try:
            return self.get(conn, operator_id)
        except NotFoundError:
            return None

    def list(self, conn: Connection) -> list[Operator]:
        rows = conn.execute(select(tables.operators).order_by(tables.operators.c.id))
        return [
            Operator.model_validate({k: r._mapping[k] for k in Operator.model_fields}) for r in rows
        ]

    def put(self, conn: Connection, operator: Operator) -> Change:
        current = self.find(conn, operator.id)
        return upsert(
            conn,
            tables.operators,
            key=tables.operators.c.id,
            same=None if current is None else current == operator,
            values={**operator.model_dump(), "updated_at": utcnow()},
        )

    def delete(self, conn: Connection, operator_id: str) -> None:
        result = conn.execute(delete(tables.operators).where(tables.operators.c.id == operator_id))
        if result.rowcount == 0:
            raise NotFoundError(f"no operator with id {operator_id!r}")
