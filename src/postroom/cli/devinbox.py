"""``postroom dev-inbox`` and ``postroom demo``."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from postroom.cli.cases import print_case
from postroom.cli.common import configure_logging, console, opened, run_command, styled
from postroom.demo import run_demo
from postroom.devinbox import DevInbox, InboxMessage, read_inbox
from postroom.devinbox.server import DEFAULT_DIRECTORY
from postroom.errors import PostroomError

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
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 1025,
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
def list_inbox(ctx: typer.Context, directory: OptionalDir = None) -> None:
    """List what the dev inbox received."""
    table = Table("#", "received", "from", "to", "subject")
    for n, m in enumerate(read_inbox(_folder(ctx, directory)), 1):
        when = datetime.fromtimestamp(m.received_at, UTC)
        table.add_row(
            str(n),
            f"{when:%H:%M:%S}",
            m.mail_from,
            ", ".join(m.rcpt_tos),
            str(m.message["subject"] or ""),
        )
    console.print(table)


def print_message(m: InboxMessage) -> None:
    msg = m.message
    head = "\n".join(
        f"{k}: {msg[k]}"
        for k in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
        if msg[k]
    )
    part = msg.get_body(preferencelist=("plain", "html"))
    text = part.get_content() if part is not None else ""
    console.print(
        Panel(
            f"{head}\n\n{text}".rstrip(),
            title=f"envelope {m.mail_from} → {', '.join(m.rcpt_tos)}",
            expand=False,
        ),
        soft_wrap=False,  # wrap long body lines inside the panel instead of cutting them
    )


@inbox_app.command("show")
def show_inbox(ctx: typer.Context, number: int, directory: OptionalDir = None) -> None:
    """Show message NUMBER (as numbered by ``list``)."""
    messages = read_inbox(_folder(ctx, directory))
    if not 1 <= number <= len(messages):
        console.print(styled(("error: ", "red"), f"the dev inbox holds {len(messages)} messages"))
        raise typer.Exit(3)
    print_message(messages[number - 1])


def demo(
    config: Annotated[Path, typer.Option(help="Example records to apply")] = Path(
        "examples/mortgage.yaml"
    ),
    inbox_dir: Annotated[Path, typer.Option(help="Dev inbox folder")] = DEFAULT_DIRECTORY,
    port: Annotated[int, typer.Option(help="Dev inbox port")] = 1025,
) -> None:
    """Run the Mortgage scenario end to end: inbox, records, case, agent, result."""

    def body() -> None:
        configure_logging("WARNING")
        with opened() as postroom:
            console.rule("Postroom demo: a Mortgage Request notifies its Case Manager")
            result = run_demo(postroom, config=config, inbox_dir=inbox_dir, port=port)
        console.print(
            f"applied {config}: {result.applied.count('created')} created, "
            f"{result.applied.count('updated')} updated, "
            f"{result.applied.count('unchanged')} unchanged"
        )
        for warning in result.applied.warnings:
            console.print(styled(("warning: ", "yellow"), warning))
        console.rule("Outbox")
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
        console.rule("Received by the dev inbox")
        for m in result.received:
            print_message(m)
        console.rule("The case")
        print_case(result.case)
        sent = [e for e in result.emails if e.status == "sent"]
        if not sent or not result.received:
            raise PostroomError("the demo email was not delivered; see the outbox above")
        console.print(
            styled(
                ("done: ", "green"),
                f"case {result.case.id} notified its Case Manager; the sent email is attached "
                f"to the case. Inspect with: .venv/bin/postroom cases show {result.case.id}",
            )
        )

    run_command(body)
