"""Opening Postroom for a long-running process that may start before its database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from postroom.agent.health import Backoff, first_line, raise_if_fatal
from postroom.app import Postroom
from postroom.settings import Settings

log = logging.getLogger("postroom")


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def open_when_the_database_answers(
    settings: Settings, *, pause: Callable[[float], bool] = _sleep
) -> Postroom | None:
    """Open Postroom, waiting (with backoff) while the database does not answer yet.

    An agent or a service started before its database (a host booting, a failover)
    waits for it as a running agent would; what waiting cannot heal is raised at once.
    ``pause(seconds)`` waits between tries and answers True to give up (None is returned).
    """
    backoff = Backoff()
    said: str | None = None
    while True:
        try:
            return Postroom(settings)
        except SQLAlchemyError as exc:
            raise_if_fatal(exc, started=False)
            reason = first_line(exc)
            if reason != said:
                log.warning("database unavailable at start-up: %s; waiting for it", reason)
                said = reason
            if pause(backoff.next_delay()):
                return None
