"""Waking idle agents when emails are committed, instead of waiting for the next poll.

``announce(conn)`` is called in every transaction that makes rows due (enqueue, retry,
release). Once that transaction has committed, agents of this process on the same
database are signalled, and on PostgreSQL a ``NOTIFY`` (sent by the server only at
commit) reaches agents in any process. An agent waits on a :class:`Wakeup` between
claims; polling every ``poll_interval`` stays the fallback, so a lost notification costs
at most one interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import weakref
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text

from postroom.db.listen import Listener, connect_params

CHANNEL = "postroom_outbox"
# Set in conn.info by announce(); the commit that follows turns it into a wake-up.
_PENDING = "postroom_wakeup_pending"
_HOOKED = "_postroom_wakeup_hooked"


class Wakeup(Protocol):
    """Tells an idle agent that rows were committed; one per running agent."""

    async def start(self) -> None:
        """Begin listening (called once, before the agent's first claim)."""

    @property
    def hears_every_commit(self) -> bool:
        """Whether commits of every process reach this wake-up now (a LISTEN is up)."""

    async def wait(self, timeout: float) -> bool:
        """Return True as soon as rows were announced, False after ``timeout`` seconds."""

    async def close(self) -> None:
        """Stop listening and free what ``start`` took."""


class Polling:
    """No notifications: the agent claims again every ``poll_interval``."""

    async def start(self) -> None:
        return None

    @property
    def hears_every_commit(self) -> bool:
        return False

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(timeout)
        return False

    async def close(self) -> None:
        return None


def announce(conn: Connection) -> None:
    """Say, in the writing transaction, that rows are due once it commits."""
    if conn.dialect.name == "postgresql":
        # Delivered by the server only when the transaction commits; several in one
        # transaction are folded into one. The payload names this process and database,
        # whose own waiters are woken directly (sooner) and so skip it.
        conn.execute(_NOTIFY, {"channel": CHANNEL, "payload": _origin(conn.engine)})
    _hook_commits(conn.engine)
    conn.info[_PENDING] = True


def wakeup_for(engine: Engine, *, enabled: bool) -> Wakeup:
    """The wake-up an agent on ``engine`` waits on (``enabled=False``: polling only)."""
    if not enabled:
        return Polling()
    listen = connect_params(engine) if engine.dialect.name == "postgresql" else None
    return Signalled(database_key(engine), listen=listen, origin=_origin(engine))


class Signalled:
    """Woken by commits in this process and, on PostgreSQL, by NOTIFY from any process."""

    def __init__(
        self, database: str, *, listen: dict[str, Any] | None = None, origin: str = ""
    ) -> None:
        self._database = database
        self._listen = listen
        self._origin = origin
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by a wake-up and cleared when wait() returns: a wake-up that comes while
        # the agent is busy makes its next wait return at once, so none is lost.
        self._woken = asyncio.Event()
        self.wakes = 0  # times wait() returned because rows were announced

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        _waiters.add(self._database, self)
        if self._listen is not None:
            self._listener = Listener(self._listen, CHANNEL, on_notify=self._notified)
            await self._listener.start()

    @property
    def listening(self) -> bool:
        """Whether a LISTEN connection is up (always False off PostgreSQL)."""
        return self._listener is not None and self._listener.listening

    @property
    def hears_every_commit(self) -> bool:
        return self.listening

    async def wait(self, timeout: float) -> bool:
        if not self._woken.is_set():
            try:
                await asyncio.wait_for(self._woken.wait(), timeout)
            except TimeoutError:
                return False
        self._woken.clear()
        self.wakes += 1
        return True

    async def close(self) -> None:
        _waiters.discard(self._database, self)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    def _notified(self, payload: str) -> None:
        if not payload or payload != self._origin:  # our own commits woke us already
            self._woken.set()

    def wake(self) -> None:
        """Wake this waiter; safe from any thread (commits happen in worker threads)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._woken.set)
        except RuntimeError:  # its loop has closed: nobody is waiting any more
            return


class _Waiters:
    """The waiters of this process, by database; weak, so a dropped agent is not kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_database: dict[str, weakref.WeakSet[Signalled]] = {}

    def add(self, database: str, waiter: Signalled) -> None:
        with self._lock:
            self._by_database.setdefault(database, weakref.WeakSet()).add(waiter)

    def discard(self, database: str, waiter: Signalled) -> None:
        with self._lock:
            waiters = self._by_database.get(database)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_database[database]

    def wake(self, database: str) -> None:
        with self._lock:
            waiters = list(self._by_database.get(database, ()))
        for waiter in waiters:
            waiter.wake()


_waiters = _Waiters()
_hook_lock = threading.Lock()
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class _ProcessToken:
    """Random per process, as pids repeat across hosts and containers; new after a fork."""

    def __init__(self) -> None:
        self._pid = 0
        self._token = ""

    def get(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._token = os.getpid(), secrets.token_hex(8)
        return self._token


_process_token = _ProcessToken()


def _origin(engine: Engine) -> str:
    """This process and database, as a NOTIFY payload."""
    digest = hashlib.sha256(database_key(engine).encode()).hexdigest()[:16]
    return f"{_process_token.get()}:{digest}"


def database_key(engine: Engine) -> str:
    """Which database ``engine`` writes to: engines with equal keys wake each other."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        url = url.set(database=str(Path(url.database or "").resolve()))
    return url.render_as_string(hide_password=True)


def _hook_commits(engine: Engine) -> None:
    """Make the commits of ``engine`` wake this process's waiters when announced.

    SQLAlchemy has no event after a commit (its ``commit`` event comes before it), so
    the dialect's commit is wrapped: the waiters are woken once the database has
    answered the COMMIT. Waking earlier would send an agent to claim rows it cannot
    see yet, and then to sleep for a whole interval. A rollback drops the wake-up.
    """
    dialect = engine.dialect
    if getattr(dialect, _HOOKED, False):
        return
    with _hook_lock:
        if getattr(dialect, _HOOKED, False):
            return
        key = database_key(engine)
        do_commit = dialect.do_commit
        do_rollback = dialect.do_rollback

        def commit_then_wake(dbapi_connection: Any) -> None:
            pending = dbapi_connection.info.pop(_PENDING, False)
            do_commit(dbapi_connection)
            if pending:
                _waiters.wake(key)

        def rollback_quietly(dbapi_connection: Any) -> None:
            dbapi_connection.info.pop(_PENDING, None)
            do_rollback(dbapi_connection)

        # Instance attributes: only this engine's dialect is changed.
        setattr(dialect, "do_commit", commit_then_wake)  # noqa: B010
        setattr(dialect, "do_rollback", rollback_quietly)  # noqa: B010
        setattr(dialect, _HOOKED, True)
