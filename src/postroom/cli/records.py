"""``postroom apply`` and ``postroom accounts …``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from postroom import catalog
from postroom.accounts import EmailAccount, Protocol, candidate_accounts, resolve_account
from postroom.accounts.connectivity import ConnectivityReport
from postroom.accounts.encryption import Encryption, WithoutCertificate, encryption_warnings
from postroom.accounts.holds import AccountHold
from postroom.cli.common import (
    JsonOption,
    console,
    id_column,
    mask,
    opened,
    print_json,
    print_step,
    run_command,
    styled,
    table,
)
from postroom.cli.kinds import delete_command
from postroom.cli.versions import cli_writer
from postroom.db.types import utcnow
from postroom.inbound.settings import InboundProtocol

accounts_app = typer.Typer(
    help="Email accounts: list, show, test connectivity, release a hold, delete.",
    no_args_is_help=True,
)


def apply(
    file: Annotated[
        Path, typer.Argument(help="YAML file of operators, accounts, correspondence, case types")
    ],
) -> None:
    """Create or update every record in FILE (idempotent; secrets as ${ENV_VAR})."""

    def body() -> None:
        with opened(create=True) as postroom:
            report = postroom.apply(file, by=cli_writer())  # named in versions kept
        rows = table("kind", id_column("name", (n for _, n, _ in report.changes)), "change")
        for kind, name, change in report.changes:
            style = {"created": "green", "updated": "yellow"}.get(change, "dim")
            rows.add_row(kind, name, styled((change, style)))
        console.print(rows)
        for warning in report.warnings:
            console.print(styled(("warning: ", "yellow"), warning))
        console.print(
            f"{report.count('created')} created, {report.count('updated')} updated, "
            f"{report.count('unchanged')} unchanged"
        )

    run_command(body)


@accounts_app.command("list")
def list_accounts(json: JsonOption = False) -> None:
    """List email accounts."""

    def body() -> None:
        with opened() as postroom:
            accounts = postroom.accounts()
            held = {h.account for h in postroom.holds()}
        if json:
            print_json([catalog.ACCOUNTS.as_json(a) for a in accounts])
            return
        rows = table(
            id_column("name", (a.name for a in accounts)),
            "protocol",
            "address",
            "server",
            "credentials",
            "inbound",
            "state",
        )
        for a in accounts:
            if a.protocol is Protocol.GRAPH:
                server = f"{a.graph_url} ({a.mailbox})"
            else:
                server = f"{a.host}:{a.port} {a.security}"
            credentials = f"profile {a.auth_profile}" if a.auth_profile else mask(a.password)
            state = styled(("held", "bold red")) if a.name in held else styled(("active", "green"))
            reads = str(a.inbound.protocol) if a.inbound is not None else "-"
            rows.add_row(a.name, a.protocol, a.address, server, credentials, reads, state)
        console.print(rows)

    run_command(body)


_COMMON = ("name", "provider", "protocol", "address", "display_name", "reply_to")
_SMTP = ("host", "port", "security", "tls_min_version", "allow_insecure_auth")
_GRAPH = ("graph_url", "mailbox", "save_to_sent_items")


def _describe_encryption(rows: Table, encryption: Encryption) -> None:
    others = {
        WithoutCertificate.FAIL: "the email fails",
        WithoutCertificate.SEND_UNENCRYPTED: "they get an unencrypted copy",
    }[encryption.without_certificate]
    rows.add_row(
        "encryption",
        f"S/MIME AES-256, {len(encryption.certificates)} certificates; "
        f"recipients without one: {others}",
    )
    for row in encryption.certificates:
        certificate = row.x509
        subject = certificate.subject.rfc4514_string()
        rows.add_row(
            f"  {row.recipient}",
            f"{subject}, valid until {certificate.not_valid_after_utc:%Y-%m-%d}",
        )
    for warning in encryption_warnings(encryption, now=utcnow()):
        rows.add_row("  warning", styled((warning, "yellow")))


def _describe_inbound(rows: Table, account: EmailAccount) -> None:
    """The mailbox the account reads, if any (the password only as set or not)."""
    inbound = account.inbound
    rows.add_row("reply_to_plus_addressing", "yes" if account.reply_to_plus_addressing else "no")
    if inbound is None:
        rows.add_row("inbound", "(none: this account does not read mail)")
        return
    if inbound.protocol is InboundProtocol.GRAPH:
        rows.add_row("inbound", f"graph ({account.mailbox})")
    else:
        insecure = " (allow_insecure_auth)" if inbound.allow_insecure_auth else ""
        rows.add_row("inbound", f"imap {inbound.host}:{inbound.port} {inbound.security}{insecure}")
        rows.add_row("inbound user_id", account.inbound_login)
        if not inbound.auth_profile:
            rows.add_row("inbound password", mask(inbound.password))
        rows.add_row(
            "inbound truststore", "custom PEM bundle" if inbound.truststore else "system CAs"
        )
    profile = account.inbound_profile
    if profile:
        how = "bearer token" if inbound.protocol is InboundProtocol.GRAPH else "XOAUTH2"
        rows.add_row("inbound auth_profile", f"{profile} ({how})")
    rows.add_row("inbound folder", inbound.folder)
    after = f"move to {inbound.move_to}" if inbound.move_to else str(inbound.after)
    rows.add_row("inbound after", after)
    rows.add_row("inbound poll_seconds", f"{inbound.poll_seconds:g}")
    rows.add_row("inbound max_message_bytes", f"{inbound.max_message_bytes:,}")


def _bounces(address: str | None) -> str:
    if not address:
        return "(none: bounces go to the from address, matched by Message-ID)"
    local, _, domain = address.rpartition("@")
    return f"{address} (envelope sender {local}+<token>@{domain})"


def describe_account(account: EmailAccount, hold: AccountHold | None = None) -> Table:
    rows = table("field", "value")
    rows.show_header = False
    graph = account.protocol is Protocol.GRAPH
    for field in (*_COMMON, *(_GRAPH if graph else _SMTP)):
        rows.add_row(field, str(getattr(account, field) or ""))
    if account.auth_profile:
        how = "bearer token" if graph else "AUTH XOAUTH2"
        rows.add_row("auth_profile", f"{account.auth_profile} ({how})")
    if not graph:
        rows.add_row("bounce_address", _bounces(account.bounce_address))
        rows.add_row("user_id", account.login)
        if not account.auth_profile:
            rows.add_row("password", mask(account.password))
        rows.add_row("truststore", "custom PEM bundle" if account.truststore else "system CAs")
    rows.add_row("on_unknown_outcome", str(account.on_unknown_outcome))
    if account.signing is not None:
        alias = f" (alias {account.signing.alias})" if account.signing.alias else ""
        rows.add_row("signing", f"S/MIME with keystore {account.signing.keystore}{alias}")
    if account.dkim is not None:
        rows.add_row("dkim", f"d={account.dkim.domain} s={account.dkim.selector}, key •••••• (set)")
    if account.encryption is not None:
        _describe_encryption(rows, account.encryption)
    _describe_inbound(rows, account)
    if hold is None:
        rows.add_row("state", styled(("active", "green")))
    else:
        rows.add_row(
            "state",
            styled(
                ("held", "bold red"),
                f" since {hold.since:%Y-%m-%d %H:%M:%S} UTC: {hold.reason}; credentials "
                f"tried again at {hold.check_at:%H:%M:%S} UTC "
                f"({hold.failures} refusals); `postroom accounts release {account.name}` "
                "after fixing them",
            ),
        )
    for key, value in sorted(account.advanced.items()):
        rows.add_row(f"advanced {key}", value)
    rows.add_row(
        "used for classes",
        f"{account.name} and its subclasses"
        if account.name != "Default"
        else "every class without its own account",
    )
    return rows


@accounts_app.command("show")
def show_account(name: str, json: JsonOption = False) -> None:
    """Show one account (secrets masked) and any departure from its provider preset."""

    def body() -> None:
        with opened() as postroom:
            sender = postroom.sender(name)
        account = sender.account
        if json:
            print_json(catalog.ACCOUNTS.as_json(account))
            return
        console.print(describe_account(account, sender.hold))
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
    """Test connectivity step by step: SMTP (resolve, connect, TLS, EHLO, STARTTLS, AUTH)
    or Graph (token, mailbox, permission); then, for an account with inbound settings,
    its mailbox: IMAP (connect, TLS or STARTTLS, greeting, login, folder, move_to, IDLE)
    or Graph (token, permission, folder)."""

    def body() -> None:
        with opened() as postroom:
            report = postroom.test_account(name)
        print_report(report)
        if not report.ok:
            raise SystemExit(1)

    run_command(body)


def print_report(report: ConnectivityReport) -> None:
    for step in report.steps:
        print_step(step)


@accounts_app.command("release")
def release(name: str) -> None:
    """Lift the hold on account NAME and queue its held emails now (after fixing it)."""

    def body() -> None:
        with opened() as postroom:
            released = postroom.release_account(name)
        console.print(f"account {name} is active; {released} held emails queued again")

    run_command(body)


accounts_app.command("delete")(delete_command(catalog.ACCOUNTS))
