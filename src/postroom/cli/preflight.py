"""What a command checks before it does anything slow: its database file, its ports."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

from postroom.errors import ConfigurationError
from postroom.settings import sqlite_path


def check_database(url: str, *, create: bool, say: Callable[[str], object]) -> None:
    """Refuse a SQLite file that is missing or holds no Postroom schema, unless ``create``.

    With ``create``, a new file is said on one line with ``say``: where it is made.
    """
    path = sqlite_path(url)
    if path is None:
        return  # PostgreSQL: a missing database is refused by the server itself
    shown = shown_path(url)
    how = "create it with 'postroom db upgrade' or 'postroom apply FILE'"
    if not path.exists():
        if not create:
            raise ConfigurationError(f"database {shown} does not exist; {how}")
        say(f"new database {shown}")
        return
    if not create and not has_schema(path):
        raise ConfigurationError(f"database {shown} has no Postroom schema; {how}")


def has_schema(path: Path) -> bool:
    """Whether the SQLite file at ``path`` holds a Postroom schema (read without writing)."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
    except sqlite3.Error:
        return True  # not a database, or unreadable: opening it says why, in one line
    return found is not None


def shown_path(url: str) -> str:
    """The file of a SQLite URL as it was written (``./postroom.db``)."""
    return url.partition(":///")[2].split("?", 1)[0]


def check_can_listen(
    host: str, port: int, *, flag: str = "--port", host_flag: str = "--host"
) -> None:
    """Raise :class:`ConfigurationError`, naming ``flag``, unless ``host:port`` is free now.

    Checked before anything slow starts: a busy port is said at once.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # the address, not the port, is wrong
        raise ConfigurationError(
            f"cannot listen on {host}: {exc.strerror or exc}; choose another with {host_flag}"
        ) from None
    try:
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            # As the servers bind: a port in TIME_WAIT is free, one listened on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
            f"running there? choose another with {flag}"
        ) from None


def free_port(host: str = "127.0.0.1", *, preferred: int | None = None) -> int:
    """``preferred`` when it can be listened on now, else a port the system picks."""
    if preferred is not None:
        try:
            check_can_listen(host, preferred)
        except ConfigurationError:
            pass
        else:
            return preferred
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
