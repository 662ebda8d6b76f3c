"""Keeping the dev inbox listening while ``postroom serve --demo`` runs.

Supervised like the agent: the watch probes the inbox's SMTP greeting every few
seconds and ends with an error when it stops answering; the supervisor logs that and
starts a new watch, which starts the inbox again first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from postroom.devinbox.server import DevInbox
from postroom.errors import PostroomError

PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 3.0


def greets(host: str, port: int, *, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether an SMTP server on ``host:port`` sends its 220 greeting."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            greeting = conn.recv(512)
            with contextlib.suppress(OSError):
                conn.sendall(b"QUIT\r\n")
    except OSError:
        return False
    return greeting.startswith(b"220")


class InboxWatch:
    """Runs until stopped while the dev inbox answers; raises when it does not."""

    def __init__(self, inbox: DevInbox, *, interval: float = PROBE_INTERVAL) -> None:
        self._inbox = inbox
        self._interval = interval

    async def run(self, *, stop: asyncio.Event) -> None:
        if not await asyncio.to_thread(greets, self._inbox.host, self._inbox.port):
            await asyncio.to_thread(self._restart)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            if not await asyncio.to_thread(greets, self._inbox.host, self._inbox.port):
                raise PostroomError(
                    f"the dev inbox on {self._inbox.host}:{self._inbox.port} stopped answering"
                )

    def _restart(self) -> None:
        self._inbox.stop()
        self._inbox.start()
