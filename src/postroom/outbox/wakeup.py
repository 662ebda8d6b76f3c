"""Waking idle agents when emails are committed, instead of waiting for the next poll.

``announce(conn)`` is called in every transaction that makes rows due (enqueue, retry,
release). An agent waits on a :class:`Wakeup` between claims; polling every
``poll_interval`` stays the fallback, so a lost notification costs at most one interval.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sqlalchemy import Connection, Engine


class Wakeup(Protocol):
    """Tells an idle agent that rows were committed; one per running agent."""

    async def start(self) -> None:
        """Begin listening (called once, before the agent's first claim)."""

    async def wait(self, timeout: float) -> bool:
        """Return True as soon as rows were announced, False after ``timeout`` seconds."""

    async def close(self) -> None:
        """Stop listening and free what ``start`` took."""


class Polling:
    """No notifications: the agent claims again every ``poll_interval``."""

    async def start(self) -> None:
        return None

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(timeout)
        return False

    async def close(self) -> None:
        return None


def announce(conn: Connection) -> None:
    """Say, in the writing transaction, that rows are due once it commits."""


def wakeup_for(engine: Engine, *, enabled: bool) -> Wakeup:
    """The wake-up an agent on ``engine`` waits on (``enabled=False``: polling only)."""
    del engine, enabled
    return Polling()
