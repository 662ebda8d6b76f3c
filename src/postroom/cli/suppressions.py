"""``postroom suppressions list|add|remove``: the addresses Postroom does not send to."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from postroom.cli.common import (
    JsonOption,
    console,
    count_option,
    opened,
    print_json,
    run_command,
    table,
)
from postroom.suppressing import chosen_scope
from postroom.suppression import EVERYWHERE, Suppression

suppressions_app = typer.Typer(
    help="The suppression list: addresses Postroom does not send to.", no_args_is_help=True
)

AccountOption = Annotated[
    str | None, typer.Option("--account", help="The account the entry holds for")
]


def suppression_json(entry: Suppression) -> dict[str, Any]:
    """An entry as ``--json`` prints it: the REST API's view of it, key for key."""
    # The API's models load the web stack; only --json needs them.
    from postroom.api.schemas.suppressions import SuppressionView  # noqa: PLC0415

    return SuppressionView.of(entry).model_dump(mode="json")


def _where(scope: str) -> str:
    return "every account" if scope == EVERYWHERE else scope


@suppressions_app.command("list")
def list_suppressions(
    account: AccountOption = None,
    everywhere: Annotated[
        bool, typer.Option("--everywhere", help="Only the entries for every account")
    ] = False,
    search: Annotated[str | None, typer.Option(help="Only addresses containing this")] = None,
    limit: Annotated[int | None, count_option("At most this many (newest)")] = None,
    json: JsonOption = False,
) -> None:
    """List suppressed addresses, newest first; --json exports them."""

    def body() -> None:
        scope = chosen_scope(account, everywhere=everywhere)
        with opened() as postroom:
            entries = postroom.suppressions(scope=scope, search=search, limit=limit)
        if json:
            print_json([suppression_json(e) for e in entries])
            return
        if not entries:
            console.print("no suppressed addresses" + (" match" if scope or search else ""))
            return
        rows = table("address", "account", "reason", "since", "detail", "by")
        for e in entries:
            rows.add_row(
                e.address,
                _where(e.scope),
                e.reason.value,
                f"{e.created_at:%Y-%m-%d %H:%M}",
                e.detail,
                e.created_by or "",
            )
        console.print(rows)
        console.print(f"{len(entries)} suppressed")

    run_command(body)


@suppressions_app.command("add")
def add(
    address: str,
    account: AccountOption = None,
    reason_text: Annotated[
        str, typer.Option("--reason-text", help="A note: why (shown with the entry)")
    ] = "",
) -> None:
    """Suppress ADDRESS for one account (--account), else for every account."""

    def body() -> None:
        with opened() as postroom:
            entry, new = postroom.suppress(
                address,
                scope=account if account is not None else EVERYWHERE,
                detail=reason_text,
                operator="cli",
            )
        if new:
            console.print(f"{entry.address} suppressed for {_where(entry.scope)}")
        else:
            console.print(f"{entry.address} was already {entry.describe()}; left as it is")

    run_command(body)


@suppressions_app.command("remove")
def remove(
    address: str,
    account: AccountOption = None,
    everywhere: Annotated[
        bool, typer.Option("--everywhere", help="Only the entry for every account")
    ] = False,
) -> None:
    """Stop suppressing ADDRESS: for one account, for every account, or (neither) at all."""

    def body() -> None:
        scope = chosen_scope(account, everywhere=everywhere)
        with opened() as postroom:
            removed = postroom.unsuppress(address, scope=scope)
        where = "" if scope is None else f" for {_where(scope)}"
        entries = "entry" if removed == 1 else "entries"
        console.print(
            f"{address.strip().lower()} no longer suppressed{where} ({removed} {entries})"
        )

    run_command(body)
