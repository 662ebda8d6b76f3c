"""Keeping a script without the ``if __name__ == "__main__":`` guard from running twice.

Processes started with ``spawn`` or a fork server (the composing pool, agent workers)
import the caller's main script again before they run. A script without the guard then
does, in every such process, whatever it does at the top level: opening Postroom and
queueing emails among it. Postroom refuses to open there, which stops that script at its
first step with nothing written, and the pool falls back to composing in the caller.
"""

from __future__ import annotations

import multiprocessing

from postroom.errors import StateError

GUARD_NEEDED = (
    "Postroom was opened while a new process was starting: a script that queues "
    "large batches (send_many) starts processes, and must keep its code under "
    "'if __name__ == \"__main__\":' so that they do not run it again"
)


def refuse_in_a_starting_child() -> None:
    """Raise :class:`StateError` in a process still importing its parent's main script."""
    # multiprocessing marks a starting child so while it imports the main module; its
    # own check (for starting processes there) relies on the same mark.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise StateError(GUARD_NEEDED)
