"""``postroom inbound …``: read a mailbox once, and the received mail (list, show, triage)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from postroom.cases.data import parse_data
from postroom.cli.common import (
    JsonOption,
    console,
    count_option,
    id_argument,
    id_column,
    opened,
    print_json,
    run_command,
    styled,
    table,
)
from postroom.errors import ConfigurationError
from postroom.inbound.mailboxes import MailboxInfo
from postroom.inbound.models import InboundStatus, ReceivedMessage

inbound_app = typer.Typer(
    help="Inbound mail: poll a mailbox, list and show what was received, triage it.",
    no_args_is_help=True,
)
MessageId = Annotated[int, id_argument("Received message id")]


def received_json(m: ReceivedMessage) -> dict[str, Any]:
    """A received message as ``--json`` prints it: the view the REST API answers with."""
    return m.model_dump(mode="json")


def _status(value: str | None) -> InboundStatus | None:
    if value is None:
        return None
    try:
        return InboundStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in InboundStatus)
        raise ConfigurationError(f"unknown status {value!r}; known: {known}") from None


def print_received(m: ReceivedMessage) -> None:
    """One received message: headers, where it went and why, its text, what is wrong in it."""
    console.print(styled((f"#{m.id}", "bold"), f" {m.status} — {m.subject or '(no subject)'}"))
    sender = f"{m.from_name} <{m.from_address}>" if m.from_name else (m.from_address or "-")
    for label, value in (
        ("from", sender),
        ("to", ", ".join(m.to) or "-"),
        ("date", f"{m.sent_at:%Y-%m-%d %H:%M:%S} UTC" if m.sent_at else "-"),
        ("received", f"{m.received_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("message-id", m.message_id or "-"),
        ("in-reply-to", m.in_reply_to or "-"),
        ("mailbox", f"{m.account}/{m.folder}"),
        ("size", f"{m.size:,} bytes"),
        ("attachments", str(m.attachments)),
        ("case", m.case_id or "-"),
        ("routing", m.reason),
        ("on server", str(m.server_state)),
    ):
        console.print(f"  {label:>12}: {value}")
    for defect in m.defects:
        console.print(f"  {'defect':>12}: {defect}")
    if m.text:
        console.print("")
        console.print(m.text)


@inbound_app.command("poll")
def poll(account: Annotated[str, typer.Argument(help="The account whose mailbox is read")]) -> None:
    """Read the account's mailbox once: ingest, route and settle what is new, then exit."""

    def body() -> None:
        from postroom.cli.common import err_console, one_line  # noqa: PLC0415
        from postroom.errors import PostroomError  # noqa: PLC0415
        from postroom.inbound.listener import PollReport  # noqa: PLC0415

        report = PollReport()
        try:
            with opened() as postroom:
                postroom.poll_inbound(account, report=report)
        except PostroomError as exc:
            if not (report.read or report.settled):
                raise  # nothing done yet: the error alone, with its usual exit code
            # Trouble met half-way (a move_to folder missing, the connection lost): what
            # was ingested is committed, so say so before the one-line error; exit 1.
            for name, count in report.lines():
                console.print(f"{name}: {count}")
            err_console.print(styled(("error: ", "bold red"), one_line(str(exc))))
            raise typer.Exit(1) from None
        for name, count in report.lines():
            console.print(f"{name}: {count}")

    run_command(body)


@inbound_app.command("list")
def list_received(
    case: Annotated[str | None, typer.Option(help="Only this case's messages")] = None,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only the triage list (unmatched)")
    ] = False,
    status: Annotated[
        str | None,
        typer.Option(help="matched, new_case, unmatched, automatic, bounce, too_large, dismissed"),
    ] = None,
    limit: Annotated[int, count_option("How many messages", most=1000)] = 50,
    json: JsonOption = False,
) -> None:
    """List received messages, newest first."""

    def body() -> None:
        chosen = _status(status)
        with opened() as postroom:
            messages = postroom.received(
                case_id=case, unmatched=unmatched, status=chosen, limit=limit
            )
        if json:
            print_json([received_json(m) for m in messages])
            return
        rows = table(
            id_column("id", (str(m.id) for m in messages)),
            "received",
            "status",
            id_column("case", (m.case_id or "-" for m in messages)),
            "account",
            "from",
            "subject",
        )
        for m in messages:
            rows.add_row(
                str(m.id),
                f"{m.received_at:%Y-%m-%d %H:%M}",
                m.status,
                m.case_id or "-",
                m.account,
                m.from_address or "-",
                m.subject,
            )
        console.print(rows)

    run_command(body)


@inbound_app.command("show")
def show(message_id: MessageId,
         json: JsonOption = False) -> None:  # fmt: skip
    """Show a received message: headers, routing, its text, attachments and defects."""

    def body() -> None:
        with opened() as postroom:
            message = postroom.received_message(message_id)
        if json:
            print_json(received_json(message))
        else:
            print_received(message)

    run_command(body)


@inbound_app.command("attach")
def attach(
    message_id: MessageId,
    case: Annotated[str, typer.Argument(help="The case to attach it to")],
) -> None:
    """Attach a received message to a case (from the triage list)."""

    def body() -> None:
        with opened() as postroom:
            message = postroom.attach_received(message_id, case)
        console.print(f"received #{message.id} attached to case {message.case_id}")

    run_command(body)


@inbound_app.command("create-case")
def create_case(
    message_id: MessageId,
    class_name: Annotated[str, typer.Argument(help="Case type class of the new case")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="key=value (repeatable), over what the mail gives"),
    ] = None,
    operator: Annotated[str | None, typer.Option(help="Operator id of the creator")] = None,
) -> None:
    """Open a case of a type from a received message (its sender, subject and text)."""

    def body() -> None:
        given = parse_data(data or [])
        with opened() as postroom:
            case = postroom.case_from_received(
                message_id, class_name, data=given, operator=operator
            )
        console.print(f"case {case.id} ({case.case_type}) created from received #{message_id}")

    run_command(body)


@inbound_app.command("dismiss")
def dismiss(message_id: MessageId) -> None:
    """Take a received message off the triage list (it is kept)."""

    def body() -> None:
        with opened() as postroom:
            message = postroom.dismiss_received(message_id)
        console.print(f"received #{message.id} dismissed")

    run_command(body)


@inbound_app.command("mailboxes")
def list_mailboxes(json: JsonOption = False) -> None:
    """The mailboxes read so far: which agent reads each, how far, the last poll and error."""

    def body() -> None:
        with opened() as postroom:
            rows = postroom.inbound_mailboxes()
        if json:
            print_json([mailbox_json(m) for m in rows])
            return
        out = table(id_column("mailbox", (m.mailbox for m in rows)), "read by", "lease until",
                    "last poll", "position", "last error")  # fmt: skip
        for m in rows:
            out.add_row(
                m.mailbox,
                m.lease_owner or "-",
                f"{m.lease_expires_at:%H:%M:%S}" if m.lease_expires_at else "-",
                f"{m.last_poll_at:%Y-%m-%d %H:%M:%S}" if m.last_poll_at else "-",
                _position(m),
                m.last_error or "",
            )
        console.print(out)

    run_command(body)


def _position(m: MailboxInfo) -> str:
    if m.validity is None:  # Graph: a delta link, long and of no use to read
        return "delta link" if m.position else "-"
    return f"UID {m.position or 0} (UIDVALIDITY {m.validity})"


def mailbox_json(m: MailboxInfo) -> dict[str, Any]:
    """A mailbox as ``inbound mailboxes --json`` prints it (never its Graph link)."""
    return {
        "mailbox": m.mailbox,
        "account": m.account,
        "folder": m.folder,
        "validity": m.validity,
        "position": m.position if m.validity is not None else None,
        "lease_owner": m.lease_owner,
        "lease_expires_at": m.lease_expires_at,
        "last_poll_at": m.last_poll_at,
        "last_error": m.last_error,
    }
