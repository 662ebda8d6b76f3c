"""``postroom profiles …``: OAuth 2.0 authentication profiles."""

from __future__ import annotations

import typer
from rich.table import Table

from postroom.cli.common import console, mask, opened, run_command, styled

profiles_app = typer.Typer(
    help="Authentication profiles (OAuth 2.0 client credentials): list, show, test.",
    no_args_is_help=True,
)


@profiles_app.command("list")
def list_profiles() -> None:
    """List authentication profiles and the accounts that use them."""

    def body() -> None:
        with opened() as postroom:
            profiles = postroom.auth_profiles()
            accounts = postroom.accounts()
        table = Table("name", "client_id", "token endpoint", "scope", "used by")
        for p in profiles:
            users = ", ".join(a.name for a in accounts if a.auth_profile == p.name)
            table.add_row(p.name, p.client_id, p.token_endpoint, p.scope, users or "-")
        console.print(table)

    run_command(body)


@profiles_app.command("show")
def show_profile(name: str) -> None:
    """Show one profile (the client secret is never shown)."""

    def body() -> None:
        with opened() as postroom:
            profile = postroom.auth_profile(name)
        table = Table("field", "value", show_header=False)
        for field in ("name", "grant_type", "client_id", "tenant_id", "token_endpoint", "scope"):
            table.add_row(field, str(getattr(profile, field) or ""))
        table.add_row("client_secret", mask(profile.client_secret))
        console.print(table)

    run_command(body)


@profiles_app.command("test")
def test_profile(name: str) -> None:
    """Request a token now and show its audience, roles and expiry (never the token)."""

    def body() -> None:
        with opened() as postroom:
            step = postroom.test_auth_profile(name)
        mark = ("✓ ", "green") if step.ok else ("✗ ", "red")
        console.print(styled(mark, (step.name, "bold"), f" {step.detail}"))
        if step.explanation:
            console.print(styled(("    " + step.explanation, "yellow")))
        if not step.ok:
            raise SystemExit(1)

    run_command(body)
