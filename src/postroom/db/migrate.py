"""Schema migrations with Alembic, run from code so no alembic.ini is needed."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from postroom.errors import DatabaseFatalError


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "postroom.db:migrations")
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema of ``engine``'s database up to ``revision``.

    Raises :class:`DatabaseFatalError` for a schema this version does not know (a newer
    Postroom wrote it): downgrading it is not this version's call.
    """
    config = alembic_config()
    with engine.connect() as connection:  # read apart: the upgrade runs its own transaction
        _refuse_unknown(connection, config)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, revision)
        except CommandError as exc:  # translated once, here
            raise DatabaseFatalError(f"the schema cannot be upgraded: {exc}") from None


def check_schema(engine: Engine) -> None:
    """Raise :class:`DatabaseFatalError` unless the schema is exactly this version's."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        _refuse_unknown(connection, config)
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        raise DatabaseFatalError("the database has no Postroom schema: run 'postroom db upgrade'")
    if current != head:
        raise DatabaseFatalError(
            f"the schema is at revision {current}, this version needs {head}: "
            "run 'postroom db upgrade'"
        )


def _refuse_unknown(connection: Connection, config: Config) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return
    scripts = ScriptDirectory.from_config(config)
    try:
        scripts.get_revision(current)
    except CommandError:
        head = scripts.get_current_head()
        raise DatabaseFatalError(
            f"the schema is at revision {current}, newer than this version of Postroom "
            f"knows (it needs {head}): run the Postroom that upgraded it"
        ) from None
