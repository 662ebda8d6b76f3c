"""``postroom dev-inbox`` and ``postroom demo``."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from postroom.app import Postroom
from postroom.cli.cases import print_case
from postroom.cli.common import (
    JsonOption,
    configure_logging,
    console,
    opened,
    port_option,
    print_json,
    run_command,
    state,
    styled,
    table,
    where,
)
from postroom.cli.preflight import check_can_listen, free_port
from postroom.demo import (
    DEMO_DATABASE_URL,
    DEMO_INBOX,
    held_records,
    live_agents,
    run_demo,
)
from postroom.devinbox import DevInbox, InboxMessage, read_inbox
from postroom.devinbox.server import DEFAULT_DIRECTORY
from postroom.errors import ConfigurationError, NotFoundError, PostroomError, StateError
from postroom.settings import sqlite_path

inbox_app = typer.Typer(
    help="A local SMTP sink on 127.0.0.1:1025 that keeps what it receives.",
    invoke_without_command=True,
)
DirOption = Annotated[Path, typer.Option("--dir", help="Where received mail is kept")]
OptionalDir = Annotated[
    Path | None, typer.Option("--dir", help="Where received mail is kept [default: postroom-inbox]")
]


def _folder(ctx: typer.Context, directory: Path | None) -> Path:
    given: Path = directory or ctx.obj or DEFAULT_DIRECTORY
    return given


@inbox_app.callback()
def serve(
    ctx: typer.Context,
    directory: DirOption = DEFAULT_DIRECTORY,
    port: Annotated[int, port_option("Port on 127.0.0.1")] = 1025,
    user: Annotated[str | None, typer.Option(help="Require AUTH with this user")] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="POSTROOM_DEV_INBOX_PASSWORD",
            help="Password for --user (env POSTROOM_DEV_INBOX_PASSWORD)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the dev inbox until interrupted (``list`` and ``show`` read what it kept)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = directory  # `dev-inbox --dir D list` means the same as `list --dir D`
        return

    def body() -> None:
        configure_logging("WARNING")
        check_can_listen("127.0.0.1", port, flag="--port")
        inbox = DevInbox(directory, port=port, user=user, password=password)
        with inbox:
            console.print(
                f"dev inbox on 127.0.0.1:{port} (STARTTLS with CA {inbox.ca_file}"
                f"{', AUTH required' if user else ''}); keeping mail in {directory}/"
            )
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            done.wait()

    run_command(body)


@inbox_app.command("list")
def list_inbox(ctx: typer.Context, directory: OptionalDir = None, json: JsonOption = False) -> None:
    """List what the dev inbox received."""

    def body() -> None:
        messages = read_inbox(_folder(ctx, directory))
        if json:
            print_json([message_json(n, m) for n, m in enumerate(messages, 1)])
            return
        rows = table("#", "received", "from", "to", "subject")
        for n, m in enumerate(messages, 1):
            when = datetime.fromtimestamp(m.received_at, UTC)
            rows.add_row(
                str(n),
                f"{when:%H:%M:%S}",
                m.mail_from,
                ", ".join(m.rcpt_tos),
                str(m.message["subject"] or ""),
            )
        console.print(rows)

    run_command(body)


def message_json(number: int, m: InboxMessage, *, full: bool = False) -> dict[str, Any]:
    """A received message as ``dev-inbox list/show --json`` print it."""
    msg = m.message
    data: dict[str, Any] = {
        "number": number,
        "file": str(m.path),
        "received_at": datetime.fromtimestamp(m.received_at, UTC),
        "mail_from": m.mail_from,
        "rcpt_tos": list(m.rcpt_tos),
        "subject": str(msg["subject"] or ""),
        "message_id": str(msg["message-id"] or ""),
    }
    if full:
        data["headers"] = [[k, str(v)] for k, v in msg.items()]
        data["text"] = _text(m)
    return data


def _text(m: InboxMessage) -> str:
    part = m.message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""


def print_message(m: InboxMessage) -> None:
    msg = m.message
    head = "\n".join(
        f"{k}: {msg[k]}"
        for k in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
        if msg[k]
    )
    console.print(
        Panel(
            f"{head}\n\n{_text(m)}".rstrip(),
            title=f"envelope {m.mail_from} → {', '.join(m.rcpt_tos)}",
            expand=False,
        ),
        soft_wrap=False,  # wrap long body lines inside the panel instead of cutting them
    )


@inbox_app.command("show")
def show_inbox(
    ctx: typer.Context, number: int, directory: OptionalDir = None, json: JsonOption = False
) -> None:
    """Show message NUMBER (as numbered by ``list``)."""

    def body() -> None:
        messages = read_inbox(_folder(ctx, directory))
        if not 1 <= number <= len(messages):
            raise NotFoundError(
                f"no message {number}: the dev inbox holds {len(messages)} "
                f"message{'' if len(messages) == 1 else 's'}"
            )
        if json:
            print_json(message_json(number, messages[number - 1], full=True))
        else:
            print_message(messages[number - 1])

    run_command(body)


def demo(
    config: Annotated[Path, typer.Option(help="Example records to apply")] = Path(
        "examples/mortgage.yaml"
    ),
    inbox_dir: Annotated[
        Path | None, typer.Option(help=f"Dev inbox folder [default: {DEMO_INBOX}]")
    ] = None,
    port: Annotated[
        int | None, port_option("Dev inbox port [default: 1025, or a free one when it is taken]")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "--yes",
            help="Apply the example to a database given with --database-url that holds "
            "records, or that a running service uses",
        ),
    ] = False,
) -> None:
    """Run the Mortgage scenario end to end: inbox, records, case, agent, result.

    It works in a database and dev inbox of its own (postroom-demo/), apart from what
    `postroom serve` uses, unless --database-url (or POSTROOM_DATABASE_URL) names one.
    """

    def body() -> None:
        configure_logging("WARNING")
        # Everything quick is checked before anything slow starts.
        if port is not None:
            check_can_listen("127.0.0.1", port, flag="--port")
        if not config.is_file():
            raise ConfigurationError(
                f"no example records at {config}: run from Postroom's folder, or give --config"
            )
        given = state.database_url is not None or "POSTROOM_DATABASE_URL" in os.environ
        if not given:
            state.database_url = DEMO_DATABASE_URL
        url = state.settings().database_url
        explicit = given and not _is_the_demos_own(url)
        inbox_port = port if port is not None else free_port(preferred=1025)
        folder = inbox_dir or DEMO_INBOX
        console.print(
            f"demo database: {where(url)}"
            + ("" if explicit else " (the demo's own; --database-url chooses another)")
        )
        console.print(f"dev inbox: 127.0.0.1:{inbox_port}, keeping mail in {folder}/")
        with opened(create=True) as postroom:
            _refuse_to_change(postroom, explicit=explicit, force=force, port=inbox_port)
            _heading("Postroom demo: a Mortgage Request notifies its Case Manager")
            result = run_demo(postroom, config=config, inbox_dir=folder, port=inbox_port)
        console.print(
            f"applied {config}: {result.applied.count('created')} created, "
            f"{result.applied.count('updated')} updated, "
            f"{result.applied.count('unchanged')} unchanged"
        )
        for warning in result.applied.warnings:
            console.print(styled(("warning: ", "yellow"), warning))
        _heading("Outbox")
        for e in result.emails:
            console.print(
                styled(
                    f"#{e.id} ",
                    (e.status, "bold"),
                    f" from {e.account} to {', '.join(r.address for r in e.recipients)}"
                    f" after {e.attempts} attempt(s)"
                    + (f" — {e.last_error}" if e.last_error else ""),
                )
            )
        _heading("Received by the dev inbox")
        for m in result.received:
            print_message(m)
        _heading("The case")
        print_case(result.case)
        sent = [e for e in result.emails if e.status == "sent"]
        if not sent or not result.received:
            raise PostroomError("the demo email was not delivered; see the outbox above")
        command = ".venv/bin/postroom" if Path(".venv/bin/postroom").exists() else "postroom"
        console.print(
            styled(
                ("done: ", "green"),
                f"case {result.case.id} notified its Case Manager; the sent email is attached "
                f"to the case. Inspect with: {command} -d {where(url)} cases show "
                f"{result.case.id}  (and: {command} dev-inbox list --dir {folder})",
            )
        )

    run_command(body)


def _is_the_demos_own(url: str) -> bool:
    path, own = sqlite_path(url), sqlite_path(DEMO_DATABASE_URL)
    return path is not None and own is not None and path.resolve() == own.resolve()


def _heading(title: str) -> None:
    # Not a rule across the console: output that is not a terminal is very wide.
    console.print(styled((f"── {title} ──", "bold")))


def _refuse_to_change(postroom: Postroom, *, explicit: bool, force: bool, port: int) -> None:
    """Refuse, unless ``force``, to repoint the accounts of a database others rely on."""
    if force:
        return
    shown = where(postroom.settings.database_url)
    elsewhere = (
        "leave out --database-url (and POSTROOM_DATABASE_URL) to use the demo's own database"
    )
    agents = live_agents(postroom)
    if agents:
        a = agents[0]
        raise StateError(
            f"a running service uses database {shown} (agent {a.id}, pid {a.pid} on {a.host}): "
            f"the demo would point its accounts at 127.0.0.1:{port}; stop it, add --force, "
            + ("or " + elsewhere if explicit else "or give another --database-url")
        )
    held = held_records(postroom) if explicit else {}
    if held:
        listed = ", ".join(f"{kind}: {n}" for kind, n in held.items())
        raise StateError(
            f"database {shown} holds records ({listed}): the demo would apply its example "
            f"over them and point its accounts at 127.0.0.1:{port}; add --force to do so, "
            f"or {elsewhere}"
        )
