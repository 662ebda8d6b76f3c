"""``postroom profiles …``: OAuth 2.0 authentication profiles."""

from __future__ import annotations

import typer

from postroom import catalog
from postroom.cli.common import (
    JsonOption,
    console,
    id_column,
    mask,
    opened,
    print_json,
    print_step,
    run_command,
    table,
)
from postroom.cli.kinds import delete_command

profiles_app = typer.Typer(
    help="Authentication profiles (OAuth 2.0 client credentials): list, show, test, delete.",
    no_args_is_help=True,
)


@profiles_app.command("list")
def list_profiles(json: JsonOption = False) -> None:
    """List authentication profiles and the accounts that use them."""

    def body() -> None:
        with opened() as postroom:
            profiles = postroom.auth_profiles()
            accounts = postroom.accounts()
        if json:
            print_json([catalog.AUTH_PROFILES.as_json(p) for p in profiles])
            return
        rows = table(
            id_column("name", (p.name for p in profiles)),
            "client_id",
            "token endpoint",
            "scope",
            "used by",
        )
        for p in profiles:
            users = ", ".join(a.name for a in accounts if a.auth_profile == p.name)
            rows.add_row(p.name, p.client_id, p.token_endpoint, p.scope, users or "-")
        console.print(rows)

    run_command(body)


@profiles_app.command("show")
def show_profile(name: str, json: JsonOption = False) -> None:
    """Show one profile (the client secret is never shown)."""

    def body() -> None:
        with opened() as postroom:
            profile = postroom.auth_profile(name)
        if json:
            print_json(catalog.AUTH_PROFILES.as_json(profile))
            return
        rows = table("field", "value")
        rows.show_header = False
        for field in ("name", "grant_type", "client_id", "tenant_id", "token_endpoint", "scope"):
            rows.add_row(field, str(getattr(profile, field) or ""))
        rows.add_row("client_secret", mask(profile.client_secret))
        console.print(rows)

    run_command(body)


@profiles_app.command("test")
def test_profile(name: str) -> None:
    """Request a token now and show its audience, roles and expiry (never the token)."""

    def body() -> None:
        with opened() as postroom:
            step = postroom.test_auth_profile(name)
        print_step(step)
        if not step.ok:
            raise SystemExit(1)

    run_command(body)


profiles_app.command("delete")(delete_command(catalog.AUTH_PROFILES))
