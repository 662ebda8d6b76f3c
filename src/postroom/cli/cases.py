"""``postroom cases …`` and ``postroom send``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cases import Case
from postroom.cases.data import parse_data
from postroom.cli.common import (
    JsonOption,
    console,
    count_option,
    err_console,
    id_column,
    opened,
    print_json,
    run_command,
    styled,
    table,
)
from postroom.errors import ConfigurationError
from postroom.inbound.conversation import ConversationItem
from postroom.outbox import Priority

cases_app = typer.Typer(
    help="Cases: create, show, change status, attach files.", no_args_is_help=True
)


def case_json(case: Case) -> dict[str, Any]:
    """A case as ``--json`` prints it: as the REST API answers it."""
    return case.model_dump(mode="json", by_alias=True)


def print_case(case: Case) -> None:
    console.print(styled((case.id, "bold"), f" {case.case_type} — status ", (case.status, "bold")))
    console.print(f"created by {case.created_by or '-'} at {case.created_at:%Y-%m-%d %H:%M:%S} UTC")
    if case.data:
        rows = table("field", "value", title="data")
        for k, v in case.data.items():
            rows.add_row(k, json.dumps(v) if not isinstance(v, str) else v)
        console.print(rows)
    if case.parties:
        rows = table("role", "name", "address", "language", title="work parties")
        for p in case.parties:
            rows.add_row(p.role, p.name, p.address, p.language or "")
        console.print(rows)
    if case.attachments:
        rows = table("name", "type", "size", "added", title="attachments")
        for a in case.attachments:
            rows.add_row(a.name, a.content_type, str(a.size), f"{a.created_at:%H:%M:%S}")
        console.print(rows)
    if case.history:
        rows = table("when", "who", "what", "detail", title="history")
        for h in case.history:
            rows.add_row(f"{h.at:%H:%M:%S}", h.actor, h.action, h.detail)
        console.print(rows)


def print_conversation(mails: list[ConversationItem]) -> None:
    """The case's emails, sent and received, oldest first; received text is data."""
    if not mails:
        return
    rows = table("when", "", "id", "from", "to", "subject", "status", title="conversation")
    for m in mails:
        rows.add_row(
            f"{m.at:%Y-%m-%d %H:%M:%S}",
            _direction(m),
            f"#{m.id}",
            m.from_address or "-",
            ", ".join(m.to),
            m.subject,
            m.status,
        )
    console.print(rows)


def _direction(m: ConversationItem) -> str:
    """``sent`` only for mail that went: one awaiting review, rejected or queued has not."""
    if m.kind == "received":
        return "received"
    return "sent" if m.status == "sent" else "outgoing"


def warn_failed(failed: list[str]) -> None:
    """The change stands, but what it was to send did not go: said on stderr."""
    for reason in failed:
        err_console.print(styled(("warning: ", "bold yellow"), f"email not sent: {reason}"))


@cases_app.command("create")
def create(
    case_type: Annotated[
        str, typer.Argument(help="Case type class, e.g. MyOrg-Mortgage-Work-MortgageRequest")
    ],
    data: Annotated[list[str] | None, typer.Option("--data", help="key=value (repeatable)")] = None,
    operator: Annotated[str | None, typer.Option(help="Operator id of the creator")] = None,
) -> None:
    """Create a case; its on-created emails are queued in the same transaction."""

    def body() -> None:
        with opened() as postroom:
            case = postroom.cases.create(case_type, data=parse_data(data or []), operator=operator)
        print_case(case)
        warn_failed(case.failed_emails())

    run_command(body)


@cases_app.command("show")
def show(case_id: str, json: JsonOption = False) -> None:
    """Show a case: data, parties, attachments, history and its emails sent and received."""

    def body() -> None:
        with opened() as postroom:
            case = postroom.cases.get(case_id)
            mails = postroom.conversation(case_id)
        if json:
            # The conversation as GET /cases/{id}/messages gives it (received HTML sanitised).
            conversation = [m.model_dump(mode="json") for m in mails]
            print_json({**case_json(case), "conversation": conversation})
        else:
            print_case(case)
            print_conversation(mails)

    run_command(body)


@cases_app.command("list")
def list_cases(
    limit: Annotated[int, count_option("How many cases", most=1000)] = 20,
    json: JsonOption = False,
) -> None:
    """List the newest cases."""

    def body() -> None:
        with opened() as postroom:
            cases = postroom.cases.recent(limit=limit)
        if json:
            print_json([case_json(c) for c in cases])
            return
        rows = table(id_column("id", (c.id for c in cases)), "type", "status", "created by",
                     "created")  # fmt: skip
        for c in cases:
            rows.add_row(
                c.id, c.case_type, c.status, c.created_by or "-", f"{c.created_at:%Y-%m-%d %H:%M}"
            )
        console.print(rows)

    run_command(body)


@cases_app.command("set-status")
def set_status(
    case_id: str,
    status: str,
    operator: Annotated[str | None, typer.Option(help="Operator id making the change")] = None,
) -> None:
    """Change a case's status; steps that fire on it queue their emails."""

    def body() -> None:
        with opened() as postroom:
            before = len(postroom.cases.get(case_id).history)
            case = postroom.cases.set_status(case_id, status, operator=operator)
        print_case(case)
        warn_failed(case.failed_emails(since=before))

    run_command(body)


@cases_app.command("attach")
def attach(
    case_id: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    operator: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Attach a file to a case."""

    def body() -> None:
        with opened() as postroom:
            case = postroom.cases.attach(
                case_id, name=file.name, content=file.read_bytes(), operator=operator
            )
        console.print(f"attached {file.name} to {case.id} ({len(case.attachments)} attachments)")

    run_command(body)


def send(
    to: Annotated[list[str], typer.Option("--to", help="Recipient address (repeatable)")],
    subject: Annotated[
        str | None, typer.Option(help="Subject, sent as written (see --template)")
    ] = None,
    body_html: Annotated[
        str | None, typer.Option("--body", help="HTML body, sent as written (see --template)")
    ] = None,
    template: Annotated[
        bool,
        typer.Option(
            "--template", help="Render --subject and --body as templates ({{ case.id }}...)"
        ),
    ] = False,
    correspondence: Annotated[
        str | None, typer.Option(help="Correspondence name instead of subject/body")
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(help="The correspondence's translation to send (de, fr-CH...)"),
    ] = None,
    case_id: Annotated[str | None, typer.Option("--case", help="Case the email belongs to")] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="Class for account resolution")
    ] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc")] = None,
    priority: Annotated[Priority, typer.Option(help="Due emails go out high first")] = (
        Priority.NORMAL
    ),
    send_after: Annotated[
        str | None, typer.Option(help="Not before this time (ISO 8601 with a time zone)")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Never at or after this time (ISO 8601 with a time zone)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue an ad-hoc email, sent from the account resolved for the case or class.

    --json prints {ids, account, account_reason, warnings}.
    """

    def body() -> None:
        if correspondence is None and (subject is None or body_html is None):
            raise ConfigurationError("give --correspondence, or both --subject and --body")
        after = _moment(send_after, "--send-after")
        expiry = _moment(expires_at, "--expires-at")
        with opened() as postroom:
            queued = postroom.queue_email(
                to=to,
                cc=cc or [],
                bcc=bcc or [],
                subject=subject,
                body=body_html,
                correspondence=correspondence,
                case_id=case_id,
                class_name=class_name,
                priority=priority,
                send_after=after,
                expires_at=expiry,
                template=template,
                language=language,
            )
            entry = postroom.outbox_entry(queued.ids[0])
        if as_json:
            print_json(
                {
                    "ids": list(queued.ids),
                    "account": queued.account,
                    "account_reason": queued.reason,
                    "warnings": list(queued.warnings),
                }
            )
            return
        console.print(f"queued as outbox #{queued.ids[0]}: {entry.subject}")
        console.print(f"account {queued.account} ({queued.reason})")
        for warning in queued.warnings:
            err_console.print(styled(("warning:", "yellow bold"), f" {warning}"))

    run_command(body)


def _moment(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{flag} {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"{flag} needs a time zone, e.g. {value}+00:00")
    return moment
