"""The ``postroom`` command line."""

from __future__ import annotations

import typer

from postroom.cli import (
    cases,
    devinbox,
    inbound,
    keystores,
    kinds,
    outbox,
    profiles,
    records,
    reviews,
    service,
    suppressions,
    versions,
    webhooks,
)
from postroom.cli.common import (
    DatabaseOption,
    KeyFileOption,
    console,
    fit_consoles,
    run_app,
    run_command,
    state,
    where,
)
from postroom.db import create_db_engine, upgrade

app = typer.Typer(
    name="postroom",
    help="Two-way correspondence for case-management applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    database_url: DatabaseOption = None,
    key_file: KeyFileOption = None,
) -> None:
    """Settings: flags, then POSTROOM_* environment variables, then defaults."""
    fit_consoles()
    state.database_url = database_url
    state.key_file = key_file


app.command()(records.apply)
app.add_typer(records.accounts_app, name="accounts")
app.add_typer(profiles.profiles_app, name="profiles")
app.add_typer(keystores.keystores_app, name="keystores")
app.add_typer(kinds.operators_app, name="operators")
versions.register(kinds.correspondence_app)
app.add_typer(kinds.correspondence_app, name="correspondence")
app.add_typer(kinds.case_types_app, name="case-types")
app.add_typer(cases.cases_app, name="cases")
app.command()(cases.send)
app.add_typer(outbox.outbox_app, name="outbox")
app.add_typer(outbox.agent_app, name="agent")
app.add_typer(inbound.inbound_app, name="inbound")
app.add_typer(suppressions.suppressions_app, name="suppressions")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.add_typer(reviews.reviews_app, name="reviews")
app.add_typer(devinbox.inbox_app, name="dev-inbox")
app.command()(devinbox.demo)
app.command()(service.serve)
app.add_typer(service.admin_app, name="admin")
app.add_typer(service.tokens_app, name="tokens")

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema (for deployments with POSTROOM_AUTO_MIGRATE=false)."""

    def body() -> None:
        engine = create_db_engine(state.settings().database_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        console.print(f"schema of {where(state.settings().database_url)} is up to date")

    run_command(body)


def main() -> None:
    run_app(app)


__all__ = ["app", "main"]
