"""A PostgreSQL LISTEN connection that survives the server: reconnects with backoff.

Used by the outbox wake-up. The connection is psycopg's own (autocommit, outside the
engine's pool, so it never holds a pooled connection or sits in a transaction), read on
the event loop: while nothing arrives it costs no CPU at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql
from sqlalchemy import Engine

log = logging.getLogger("postroom.agent")

APPLICATION_NAME = "postroom-wakeup"
CONNECT_TIMEOUT_SECONDS = 10
# TCP keepalives: a server that vanished without closing the socket (a host gone, a
# network cut) is noticed within about a minute, not at the next write that never comes.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}  # fmt: skip


def connect_params(engine: Engine) -> dict[str, Any]:
    """What psycopg needs to open a connection of its own to ``engine``'s database."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    params = {k: v for k, v in params.items() if k != "context"}  # SQLAlchemy's adapters
    return {
        **params,
        **KEEPALIVES,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": APPLICATION_NAME,
        "autocommit": True,
    }


class Listener:
    """LISTENs on one channel and calls ``on_notify(payload)`` per notification; reconnects."""

    def __init__(
        self,
        params: dict[str, Any],
        channel: str,
        *,
        on_notify: Callable[[str], None],
        retry_first: float = 0.5,
        retry_cap: float = 10.0,
    ) -> None:
        self._params = params
        self._channel = channel
        self._on_notify = on_notify
        self._retry_first = retry_first
        self._retry_cap = retry_cap
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0  # LISTEN connections opened so far (1 + reconnects)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, *, wait: float = CONNECT_TIMEOUT_SECONDS) -> None:
        """Begin listening; returns once LISTEN is in place, or after ``wait`` seconds.

        Waiting closes the gap in which a commit right after start would go unheard; a
        database that does not answer in time is retried in the background meanwhile.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="postroom-listen")
        try:
            await asyncio.wait_for(self._listening.wait(), wait)
        except TimeoutError:
            return

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen(reconnect=self.connections > 0)
            except (psycopg.Error, OSError) as exc:
                if self._listening.is_set():
                    failures = 0  # it had worked: a new spell of trouble
                    self._listening.clear()
                    # Whoever sleeps long because notifications covered the rest must
                    # go back to polling now.
                    self._on_notify("")
                # One line per spell of trouble; polling covers the gap, and a traceback
                # would only repeat what the line says.
                if failures == 0:
                    log.warning(
                        "wake-up: no LISTEN connection (%s); polling until it is back",
                        _first_line(exc),
                    )
                failures += 1
            await asyncio.sleep(self._delay(failures))

    async def _listen(self, *, reconnect: bool) -> None:
        conn = await psycopg.AsyncConnection.connect(**self._params)
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.connections += 1
            self._listening.set()
            if reconnect:
                log.info("wake-up: listening again")
                # Commits made while nobody listened were not heard: look once now
                # rather than at the next poll.
                self._on_notify("")
            await self._hand_on(conn.pgconn)
        finally:
            await conn.close()

    async def _hand_on(self, pgconn: pq.abc.PGconn) -> None:
        """Pass notifications on until the connection fails; no CPU while none come.

        Read straight from the socket when it is readable: psycopg's ``notifies()``
        wakes ten times a second to look for interrupts, which an idle agent would pay.
        """
        loop = asyncio.get_running_loop()
        broken: asyncio.Future[None] = loop.create_future()
        fd = pgconn.socket

        def readable() -> None:
            try:
                pgconn.consume_input()
                if pgconn.status == pq.ConnStatus.BAD:
                    raise psycopg.OperationalError("the connection was closed")
            except psycopg.Error as exc:
                loop.remove_reader(fd)  # a dead socket stays readable: stop at once
                if not broken.done():
                    broken.set_exception(exc)
                return
            while (notify := pgconn.notifies()) is not None:
                self._on_notify(notify.extra.decode(errors="replace"))

        loop.add_reader(fd, readable)
        try:
            await broken
        finally:
            loop.remove_reader(fd)

    def _delay(self, failures: int) -> float:
        ceiling = min(self._retry_cap, self._retry_first * 2.0 ** min(failures - 1, 32))
        # Jitter keeps many agents from reconnecting to a restarted server in step.
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - not for secrets


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
