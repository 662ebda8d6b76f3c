"""A pool of composing processes, started on first use and kept for the next batches."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from postroom.cases.emails import EmailRequest
from postroom.composing.plan import Plan, Shard, shards
from postroom.composing.worker import compose_shard, ready, watch_owner

log = logging.getLogger(__name__)


def pool_processes(configured: int | None) -> int:
    """``compose_processes``, or one per usable core when unset."""
    if configured is not None:
        return configured
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    # Never fork: the caller has threads and pooled database connections. A fork
    # server starts each process from a clean one, faster than spawning Python anew.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Imported once in the fork server, not again in every process it starts.
        context.set_forkserver_preload(["postroom.composing.worker"])
        return context
    return multiprocessing.get_context("spawn")


class ComposePool:
    """Processes that render and build the emails of large ``send_many`` batches."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._warming: list[Future[bool]] = []
        # A pool that broke before composing anything will break again (a script without
        # the ``if __name__ == "__main__":`` guard): the batches are composed in the caller.
        self.usable = True
        self._delivered = False

    def ready(self) -> bool:
        """Whether the processes are up; starts them in the background if they are not.

        Starting takes a second or two (each imports Postroom): the batches that come
        meanwhile are composed in the caller rather than wait for it.
        """
        with self._lock:
            if not self.usable:
                return False
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=_context(),
                    initializer=watch_owner,
                    initargs=(os.getpid(),),
                )
                # One call per process: each is started (and imports Postroom) now.
                self._warming = [self._executor.submit(ready) for _ in range(self.processes)]
            if not all(f.done() for f in self._warming):
                return False
            failed = next((f.exception() for f in self._warming if f.exception()), None)
        if failed is None:
            self._delivered = True
            return True
        self._broken(self._executor, failed)
        return False

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                raise BrokenProcessPool("the composing pool is not running")
            return self._executor

    def compose(self, plan: Plan, requests: Sequence[EmailRequest]) -> Iterator[Shard]:
        """The shards of ``requests`` in order, up to the first that failed.

        If a process of the pool dies, the pool is stopped (the next batch starts a new
        one) and the iteration ends early, with one warning: the caller composes what is
        left itself.
        """
        executor: ProcessPoolExecutor | None = None
        futures: list[Future[Shard]] = []
        try:
            executor = self._started()
            for piece in shards(len(requests), processes=self.processes):
                futures.append(
                    executor.submit(
                        compose_shard, plan, piece.start, list(requests[piece.start : piece.stop])
                    )
                )
            for future in futures:
                shard = future.result()
                self._delivered = True
                yield shard
                if shard.failed:
                    return
        except BrokenProcessPool as exc:
            self._broken(executor, exc)
        except CancelledError:
            # The pool was closed meanwhile (close_compose_pool, Postroom.close from
            # another thread): the caller composes what is left itself.
            log.info("the composing pool was closed during a batch; composed in the caller")
        finally:
            for future in futures:
                future.cancel()

    def _broken(self, executor: ProcessPoolExecutor | None, exc: BaseException) -> None:
        if executor is not None:
            self._discard(executor)
        if not isinstance(exc, BrokenProcessPool):
            log.warning("the composing processes failed to start (%s)", exc)
        if not self._delivered:
            self.usable = False
            said = (
                "the composing processes could not start; batches are composed in the "
                "calling process (a script needs the 'if __name__ == \"__main__\":' guard)"
            )
            log.warning(said)
        else:
            log.warning(
                "a composing process stopped unexpectedly; the rest of this batch is "
                "composed in the calling process, and the next batch starts a new pool"
            )

    def pids(self) -> list[int]:
        """The process ids of the running pool (none before the first large batch)."""
        with self._lock:
            executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(p.pid for p in processes.values() if p.pid is not None and p.is_alive())

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the processes (waiting for them to exit); a later batch starts new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._warming = []
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
