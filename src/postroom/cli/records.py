"""``postroom apply`` and ``postroom accounts …``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from postroom.accounts import EmailAccount, candidate_accounts, resolve_account
from postroom.accounts.connectivity import check_connectivity
from postroom.cli.common import console, mask, opened, run_command, styled

accounts_app = typer.Typer(
    help="Email accounts: list, show, test connectivity.", no_args_is_help=True
)


def apply(
    file: Annotated[
        Path, typer.Argument(help="YAML file of operators, accounts, correspondence, case types")
    ],
) -> None:
    """Create or update every record in FILE (idempotent; secrets as ${ENV_VAR})."""

    def body() -> None:
        with opened() as postroom:
            report = postroom.apply(file)
        table = Table("kind", "name", "change")
        for kind, name, change in report.changes:
            style = {"created": "green", "updated": "yellow"}.get(change, "dim")
            table.add_row(kind, name, styled((change, style)))
        console.print(table)
        for warning in report.warnings:
            console.print(styled(("warning: ", "yellow"), warning))
        console.print(
            f"{report.count('created')} created, {report.count('updated')} updated, "
            f"{report.count('unchanged')} unchanged"
        )

    run_command(body)


@accounts_app.command("list")
def list_accounts() -> None:
    """List email accounts."""

    def body() -> None:
        with opened() as postroom:
            accounts = postroom.accounts()
        table = Table("name", "provider", "address", "server", "security", "password")
        for a in accounts:
            table.add_row(
                a.name, a.provider, a.address, f"{a.host}:{a.port}", a.security, mask(a.password)
            )
        console.print(table)

    run_command(body)


def describe_account(account: EmailAccount) -> Table:
    table = Table("field", "value", show_header=False)
    for field in (
        "name",
        "provider",
        "protocol",
        "address",
        "display_name",
        "reply_to",
        "host",
        "port",
        "security",
        "tls_min_version",
        "allow_insecure_auth",
    ):
        table.add_row(field, str(getattr(account, field) or ""))
    table.add_row("user_id", account.login)
    table.add_row("password", mask(account.password))
    table.add_row("truststore", "custom PEM bundle" if account.truststore else "system CAs")
    for key, value in sorted(account.advanced.items()):
        table.add_row(f"advanced {key}", value)
    table.add_row(
        "used for classes",
        f"{account.name} and its subclasses"
        if account.name != "Default"
        else "every class without its own account",
    )
    return table


@accounts_app.command("show")
def show_account(name: str) -> None:
    """Show one account (secrets masked) and any departure from its provider preset."""

    def body() -> None:
        with opened() as postroom:
            account = postroom.account(name)
        console.print(describe_account(account))
        for warning in account.warnings:
            console.print(styled(("warning: ", "yellow"), warning))

    run_command(body)


@accounts_app.command("resolve")
def resolve(class_name: str) -> None:
    """Show which account an email for CLASS_NAME would be sent from, and why."""

    def body() -> None:
        with opened() as postroom:
            names = {a.name for a in postroom.accounts()}
        resolution = resolve_account(class_name, names.__contains__)
        console.print(f"tries: {' → '.join(candidate_accounts(class_name))}")
        console.print(styled((resolution.account, "bold"), f": {resolution.reason}"))

    run_command(body)


@accounts_app.command("test")
def test_account(name: str) -> None:
    """Test connectivity: resolve, connect, TLS, EHLO, STARTTLS, AUTH, step by step."""

    def body() -> None:
        with opened() as postroom:
            account = postroom.account(name)
            report = asyncio.run(
                check_connectivity(account, timeout=postroom.settings.smtp_timeout)
            )
        for step in report.steps:
            mark = ("✓ ", "green") if step.ok else ("✗ ", "red")
            console.print(styled(mark, (step.name, "bold"), f" {step.detail}"))
            if step.explanation:
                console.print(styled(("    " + step.explanation, "yellow")))
        if not report.ok:
            raise SystemExit(1)

    run_command(body)
