"""``postroom keystores …``: signing keystores (the key material is never shown)."""

from __future__ import annotations

import typer

from postroom import catalog
from postroom.cli.common import (
    JsonOption,
    console,
    id_column,
    opened,
    print_json,
    run_command,
    styled,
    table,
)
from postroom.cli.kinds import delete_command
from postroom.keystores.inspection import describe

keystores_app = typer.Typer(help="Signing keystores: list, show, delete.", no_args_is_help=True)


@keystores_app.command("list")
def list_keystores(json: JsonOption = False) -> None:
    """List keystores, their kind and the accounts that sign with them."""

    def body() -> None:
        with opened() as postroom:
            keystores = postroom.keystores()
            accounts = postroom.accounts()
        if json:
            print_json([catalog.KEYSTORES.as_json(k) for k in keystores])
            return
        rows = table(id_column("name", (k.name for k in keystores)), "kind", "alias", "used by")
        for k in keystores:
            users = [a.name for a in accounts if a.signing and a.signing.keystore == k.name]
            rows.add_row(k.name, str(k.kind), k.alias or "-", ", ".join(users) or "-")
        console.print(rows)

    run_command(body)


@keystores_app.command("show")
def show_keystore(
    name: str,
    alias: str | None = typer.Option(None, help="The entry, when the store holds several."),
    address: str | None = typer.Option(None, help="Check that the certificate covers it."),
    json: JsonOption = False,
) -> None:
    """Subject, issuer, serial, validity, key, e-mail addresses; warnings on expiry or address."""

    def body() -> None:
        with opened() as postroom:
            keystore = postroom.keystore(name)
            users = [a for a in postroom.accounts() if a.signing and a.signing.keystore == name]
        if json:
            print_json(catalog.KEYSTORES.as_json(keystore))
            return
        checked = address or (users[0].address if users else None)
        info = describe(keystore.entry(alias), address=checked)
        rows = table("field", "value")
        rows.show_header = False
        for label, value in (
            ("name", keystore.name),
            ("kind", str(keystore.kind)),
            ("alias", info.alias),
            ("subject", info.subject),
            ("issuer", info.issuer),
            ("serial", info.serial),
            ("valid", f"{info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d}"),
            ("key", f"{info.key_type} {info.key_size} bits"),
            ("e-mail addresses", ", ".join(info.emails) or "(none)"),
            ("chain", f"{info.chain_length} certificate(s) besides the signer's"),
            ("password", "•••••• (set)" if keystore.password else "(not set)"),
        ):
            rows.add_row(label, value)
        console.print(rows)
        for warning in info.warnings:
            console.print(styled(("warning: ", "yellow"), warning))

    run_command(body)


keystores_app.command("delete")(delete_command(catalog.KEYSTORES))
