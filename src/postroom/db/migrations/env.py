"""Alembic environment: runs on the connection handed over by ``postroom.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from postroom.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is None:
    raise RuntimeError("run migrations through postroom.db.migrate.upgrade()")
_run(_connection)
