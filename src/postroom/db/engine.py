"""Engine factory: the only place that knows SQLite needs pragmas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from postroom.settings import sqlite_path

READ_ONLY_OPTION = "postroom_read_only"
CONNECT_TIMEOUT_SECONDS = 10
# Below the 15 s after which a silent agent shows as stale: an agent waiting on locks
# still beats between two waits, and shows as degraded with the reason.
LOCK_TIMEOUT_MS = 5000


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``synchronous=FULL`` and a busy timeout."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            # Pooled connections move between the agent's worker threads; the pool
            # hands each to one thread at a time, so sharing is safe.
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=QueuePool,
            pool_size=4,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # Bounded waits: a database host that does not answer fails the connect, and a lock
    # held elsewhere (a long migration, a manual LOCK TABLE) fails the statement, so the
    # agent says it is degraded and retries, instead of hanging silently as 'stale'.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        },
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling issues BEGIN lazily and lets reads start
    # deferred transactions that later fail to upgrade; we begin explicitly instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed outbox row survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two agents claiming at once
    # serialise on the lock instead of one failing with "database is locked". A reading
    # transaction (see reading()) takes no lock: under WAL it reads a snapshot.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads: on SQLite it does not hold the write lock.

    For work that may take long and writes nothing, such as rendering templates, so that
    it does not make every writer wait (the writing follows in a transaction of its own).
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY_OPTION: True})
        with conn.begin():
            yield conn
