"""Database access: engine factory, schema and migrations."""

from postroom.db.engine import create_db_engine, is_sqlite
from postroom.db.migrate import upgrade
from postroom.db.types import utcnow

__all__ = ["create_db_engine", "is_sqlite", "upgrade", "utcnow"]
