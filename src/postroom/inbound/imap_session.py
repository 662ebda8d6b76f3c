"""An IMAP session's plumbing: the one thread its calls run in, and the IDLE loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from postroom.errors import TransientDeliveryError

_T = TypeVar("_T")

IDLE_SLICE = 1.0  # a stop or a timeout is noticed within this many seconds
_DEAD_IDLE_SLICES = 5  # empty answers in a row, each at once: the server closed the socket


class Worker:
    """One daemon thread running calls in order: a stuck socket never blocks an exit."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, future = call
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the awaiting side
                    future.set_exception(exc)

    def submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._calls.put((fn, future))
        return asyncio.wrap_future(future)

    def stop(self) -> None:
        self._calls.put(None)


def idle_until(client: Any, end: float, halted: Callable[[], bool]) -> bool:
    """Check an IDLE session in slices until ``end`` or ``halted()``; True on new mail."""
    quick_empty = 0
    while not halted():
        left = end - time.monotonic()
        if left <= 0:
            return False
        piece = min(IDLE_SLICE, left)
        began = time.monotonic()
        responses = client.idle_check(timeout=piece)
        if any(r and r[0] == b"BYE" for r in responses):
            raise TransientDeliveryError(
                "the IMAP server ended the connection during IDLE", stage="wait"
            )
        if new_mail(responses):
            return True
        # idle_check answers [] at once, again and again, once the socket is at EOF.
        quick = not responses and time.monotonic() - began < piece / 2
        quick_empty = quick_empty + 1 if quick else 0
        if quick_empty >= _DEAD_IDLE_SLICES:
            raise TransientDeliveryError(
                "the IMAP server closed the connection during IDLE", stage="wait"
            )
    return False


def new_mail(responses: Sequence[Any]) -> bool:
    """Whether untagged responses announce mail: ``* n EXISTS`` or ``* n RECENT`` (n > 0)."""
    return any(
        isinstance(r, tuple)
        and len(r) >= 2
        and (r[1] == b"EXISTS" or (r[1] == b"RECENT" and r[0] != 0))
        for r in responses
    )
