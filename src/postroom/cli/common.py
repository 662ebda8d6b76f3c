"""What every command shares: settings from flags and environment, output, errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from postroom.accounts.connectivity import Step
from postroom.agent.opening import open_when_the_database_answers as waiting_open
from postroom.app import Postroom
from postroom.cli.preflight import check_database
from postroom.errors import (
    ConfigurationError,
    MessageError,
    NotFoundError,
    PostroomError,
    StateError,
    TemplateError,
)
from postroom.settings import Settings
from postroom.text import check_tree, printable

try:  # Typer 0.2x bundles its own Click, whose context stack is the one commands run in
    from typer._click import exceptions as click_errors
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older Typer runs on Click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]
    from click import get_current_context  # type: ignore[no-redef]

log = logging.getLogger("postroom")
# Markup off: subjects, addresses and errors are data, and "[...]" in them must print as is.
# Markup and emoji codes off: what is printed is data (a received subject or body may
# hold "[bold]" or ":smile:"), and it is shown as written.
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
# Output read by a script or a pager is not cut to 80 columns: rows stay whole lines.
PIPED_WIDTH = 10_000


def fit_consoles() -> None:
    """Size the consoles for this run: ``COLUMNS``, else the terminal, else wide."""
    for con in (console, err_console):
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            con.width = int(columns)
        elif con.is_terminal:
            con.width = shutil.get_terminal_size().columns
        else:
            con.width = PIPED_WIDTH


def table(*columns: str | Column, title: str | None = None) -> Table:
    """A table whose cells wrap, and fold words too long for their column: nothing is cut."""
    made = [c if isinstance(c, Column) else Column(c, overflow="fold") for c in columns]
    return Table(*made, title=title)


def id_column(header: str, values: Iterable[str]) -> Column:
    """A column of ids, never wrapped or cut: they are what other commands take."""
    width = max((len(v) for v in values), default=len(header))
    return Column(header, no_wrap=True, min_width=max(width, len(header)), overflow="fold")


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs; nothing in it is parsed as markup."""
    return Text.assemble(*parts)


def print_step(step: Step) -> None:
    """One step of a test: a tick or a cross, its name and detail, then what to do about it."""
    mark = ("✓ ", "green") if step.ok else ("✗ ", "red")
    console.print(styled(mark, (step.name, "bold"), f" {step.detail}"))
    if step.explanation:
        console.print(styled(("    " + step.explanation, "yellow")))


DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", "-d", help="Database URL (env POSTROOM_DATABASE_URL)", show_default=False
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option("--key-file", help="Key file for secrets (env POSTROOM_KEY_FILE)"),
]

# Ids are the database's INTEGER, 32 bits on PostgreSQL (the REST API bounds them alike):
# a larger number names nothing, and the drivers would refuse it with an overflow, not
# "not found". Out of range is Typer's usage error: one line, exit 2, before any query.
MAX_ID = 2**31 - 1
MAX_PORT = 65_535


def id_argument(help: str, *, metavar: str | None = None) -> Any:
    """A record id argument, 1 to :data:`MAX_ID`: ``Annotated[int, id_argument("...")]``."""
    return typer.Argument(metavar=metavar, min=1, max=MAX_ID, help=help, show_default=False)


def id_option(help: str) -> Any:
    """An option naming a record id (``--before``), bounded as :func:`id_argument`."""
    return typer.Option(min=1, max=MAX_ID, help=help, show_default=False)


def count_option(help: str, *, most: int = MAX_ID) -> Any:
    """A ``--limit``: at least 1, at most ``most`` (a row count the database can take)."""
    return typer.Option(min=1, max=most, help=help)


def port_option(help: str) -> Any:
    """A TCP port option, 1 to 65535: anything else is a usage error, not a socket's."""
    return typer.Option(min=1, max=MAX_PORT, help=help)


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (keys as documented)")
]


class State:
    """Global options given before the command."""

    database_url: str | None = None
    key_file: Path | None = None
    extra: dict[str, Any]

    def __init__(self) -> None:
        self.extra = {}

    def settings(self, **overrides: Any) -> Settings:
        try:
            return Settings.from_flags(
                database_url=self.database_url, key_file=self.key_file, **self.extra, **overrides
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: "
                f"{str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise ConfigurationError(f"invalid settings: {problems}") from None


state = State()


@contextmanager
def opened(*, create: bool = False, wait: bool = False, **overrides: Any) -> Iterator[Postroom]:
    """Postroom on the settings; with ``wait``, once the database answers (long runners).

    Unless ``create``, a SQLite database that does not exist yet (or has no schema) is
    refused: a mistyped path must not become a new, empty database.
    """
    settings = state.settings(**overrides)
    check_database(settings.database_url, create=create, say=err_console.print)
    postroom = open_when_the_database_answers(settings) if wait else Postroom(settings)
    try:
        yield postroom
    finally:
        postroom.close()


def open_when_the_database_answers(settings: Settings) -> Postroom:
    """Open Postroom, waiting (with backoff) while the database does not answer yet."""
    postroom = waiting_open(settings)
    assert postroom is not None  # sleeping between tries never gives up
    return postroom


EXIT_CODES: list[tuple[type[Exception], int]] = [
    (NotFoundError, 3),
    (StateError, 4),
    (ConfigurationError, 2),
    (MessageError, 2),
    (TemplateError, 2),
    (PostroomError, 1),
]


def run_command(func: Callable[[], None]) -> None:
    """Run a command body, turning Postroom errors into a message and an exit code."""
    try:
        check_arguments()
        func()
    except PostroomError as exc:
        code = next(c for kind, c in EXIT_CODES if isinstance(exc, kind))
        # One line, whatever the message holds: scripts and logs read it as one.
        err_console.print(styled(("error: ", "bold red"), one_line(str(exc))))
        raise typer.Exit(code) from None
    except SQLAlchemyError as exc:
        # The driver's first line says what is wrong (refused, no such table, not a
        # database); the URL is shown without its password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
            reason += " (the schema is missing: run 'postroom db upgrade')"
        err_console.print(
            styled(
                ("error: ", "bold red"),
                f"database {where(state.settings().database_url)}: {reason}",
            )
        )
        raise typer.Exit(1) from None
    except UnicodeError as exc:
        # Checked text cannot get here; this keeps anything unforeseen (a template that
        # writes a lone surrogate, say) to one line instead of a traceback.
        err_console.print(
            styled(("error: ", "bold red"), f"text is not valid Unicode: {printable(str(exc))}")
        )
        raise typer.Exit(2) from None


def one_line(message: str) -> str:
    """``message`` with its line breaks as spaces."""
    return " ".join(part.strip() for part in message.splitlines()) if "\n" in message else message


def run_app(app: typer.Typer) -> None:
    """Run the command line; a usage error (an argument of the wrong type) is one line too.

    Typer draws those in a box over several lines, before any command runs; every other
    refusal is one ``error: …`` line, which scripts and logs read more easily.
    """
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        if exc.format_message().strip():  # Typer's rich help has printed itself already
            exc.show()
        raise SystemExit(exc.exit_code) from None
    except click_errors.UsageError as exc:
        err_console.print(styled(("error: ", "bold red"), usage_problem(exc)))
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        err_console.print("Aborted!")
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def usage_problem(exc: Any) -> str:
    """A usage error on one line, naming the argument or option as ``--help`` shows it."""
    param = getattr(exc, "param", None)
    if type(exc) is click_errors.BadParameter and param is not None:
        # Pydantic's "Value error, " prefix says nothing to a user of the command line.
        message = f"{_flag(param)}: {exc.message.replace('Value error, ', '')}"
    else:
        message = exc.format_message()
    message = " ".join(message.split())
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return printable(message.rstrip(".")) + where


def check_arguments() -> None:
    """Refuse text arguments and options that are not valid Unicode, naming the flag.

    Python hands undecodable argv bytes over as lone surrogates (``--subject $'\\xff'``
    arrives as U+DCFF). Paths are left alone: a file name need not be UTF-8 to be opened.
    """
    ctx = get_current_context(silent=True)
    while ctx is not None:
        for param in ctx.command.params:
            value = ctx.params.get(param.name or "")
            if isinstance(value, str | list | tuple):
                check_tree(value, field=_flag(param))
        ctx = ctx.parent


def _flag(param: Any) -> str:
    """``--subject`` for an option, ``CASE_ID`` (or its metavar, as --help shows it) for
    an argument."""
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    if opts:
        return str(max(opts, key=len))
    return str(getattr(param, "metavar", None) or param.name or "argument").upper()


def configure_logging(level: str) -> None:
    if level.upper() not in logging.getLevelNamesMapping():
        raise ConfigurationError(
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every connection at INFO; that is noise around a dev inbox.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The HTTP client logs every request's URL at INFO: webhook URLs may carry query
    # strings their owners did not mean for logs.
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def where(url: str) -> str:
    """A database URL fit to print: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def print_json(data: Any) -> None:
    """``--json`` output: one JSON document on stdout, keys as documented, dates in ISO 8601."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def mask(value: object) -> str:
    """How a secret is shown: whether it is set, never what it is."""
    return "•••••• (set)" if value else "(not set)"
