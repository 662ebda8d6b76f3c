"""An agent's health: its states, which database faults heal, and how long to wait.

Pure: no I/O. The agent reports through :class:`Health`; the service's health check,
``postroom agent list``, the Studio and ``/metrics`` read what it reports.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from postroom.errors import DatabaseFatalError, StateError


class AgentState(StrEnum):
    """What an agent's row says of it (``stale`` is derived from a silent heartbeat)."""

    RUNNING = "running"
    DEGRADED = "degraded"  # alive, but the database does not let it work; it retries
    STOPPED = "stopped"


_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    AgentState.RUNNING: frozenset({AgentState.DEGRADED, AgentState.STOPPED}),
    AgentState.DEGRADED: frozenset({AgentState.RUNNING, AgentState.STOPPED}),
    AgentState.STOPPED: frozenset(),
}


def check_transition(old: AgentState, new: AgentState) -> None:
    """Raise :class:`StateError` unless ``old`` may become ``new``."""
    if new is not old and new not in _TRANSITIONS[old]:
        raise StateError(f"an agent cannot go from {old} to {new}")


# SQLite's words for a file that is not (or no longer) a database: nothing heals that.
_CORRUPT = ("file is not a database", "database disk image is malformed")
# A schema older or newer than the code: waiting cannot fix it, an upgrade can. SQLite
# says so in words, PostgreSQL by SQLSTATE (undefined table, undefined column); other
# ProgrammingErrors, a revoked permission say, can be fixed while the agent waits.
_SCHEMA = ("no such table", "no such column")
_SCHEMA_STATES = frozenset({"42P01", "42703"})
# Before the first connection worked, only a database that is not reachable yet is worth
# waiting for (a host booting, a server starting); anything else (refused credentials, a
# database or SSL setting that cannot work, a half-made schema) will not heal by waiting.
_NOT_YET_REACHABLE = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "timed out",
    "not currently accepting connections",
    "the database system is",  # starting up, shutting down, in recovery mode
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "broken pipe",
    "eof detected",
    "no route to host",
    "network is unreachable",
    "could not translate host name",
    "name resolution",
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
)


def first_line(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's statement and parameters."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database or its driver (not from Postroom)."""
    return isinstance(exc, SQLAlchemyError | sqlite3.Error)


def fatal_reason(exc: BaseException, *, started: bool) -> str | None:
    """Why a database error can never heal by waiting, or ``None`` when it can.

    ``started``: whether the agent has worked with this database before; until then,
    only a database that is not reachable yet is worth waiting for.
    """
    reason = first_line(exc)
    lower = reason.lower()
    if any(words in lower for words in _CORRUPT):
        return f"the database file is damaged ({reason}): restore it from a backup"
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if (
        isinstance(exc, NoSuchTableError)
        or sqlstate in _SCHEMA_STATES
        or any(w in lower for w in _SCHEMA)
    ):
        return f"the schema does not match this version ({reason}): run 'postroom db upgrade'"
    if not started and not any(words in lower for words in _NOT_YET_REACHABLE):
        return f"the database cannot be used as configured ({reason})"
    return None


def raise_if_fatal(exc: BaseException, *, started: bool) -> None:
    """Raise :class:`DatabaseFatalError` for a fault that cannot heal."""
    reason = fatal_reason(exc, started=started)
    if reason is not None:
        raise DatabaseFatalError(reason) from exc


@dataclass(slots=True)
class Backoff:
    """Capped exponential delays with jitter: about ``first`` doubling up to ``cap``."""

    first: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next try; each call counts one more failure."""
        ceiling = min(self.cap, self.first * 2.0 ** min(self.failures, 32))
        self.failures += 1
        # Jitter keeps many agents from hammering a database that just came back in step.
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - not for secrets

    def reset(self) -> None:
        self.failures = 0


@dataclass(slots=True)
class Health:
    """An agent's live condition: its state, why, and its database errors in a row."""

    state: AgentState = AgentState.RUNNING
    reason: str | None = None
    db_errors: int = 0
    started: bool = False  # has the database answered this agent once?

    def degrade(self, reason: str) -> bool:
        """Count one database error; ``True`` when this starts a spell of trouble.

        The reason follows the latest error (an outage may begin with a dropped connection
        and go on with refused ones); it is one spell until :meth:`recover`.
        """
        check_transition(self.state, AgentState.DEGRADED)
        starts = self.state is not AgentState.DEGRADED
        self.state, self.reason = AgentState.DEGRADED, reason
        self.db_errors += 1
        return starts

    def recover(self) -> bool:
        """The database answered; ``True`` when this ends a degraded spell."""
        self.started = True
        if self.state is not AgentState.DEGRADED:
            return False
        self.state, self.reason, self.db_errors = AgentState.RUNNING, None, 0
        return True

    def stop(self) -> None:
        check_transition(self.state, AgentState.STOPPED)
        self.state, self.reason = AgentState.STOPPED, None
