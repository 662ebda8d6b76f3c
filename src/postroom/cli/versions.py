"""``postroom correspondence versions|diff|restore``: a correspondence's saved versions."""

# No ``from __future__ import annotations``: Typer reads the commands' annotations.
import getpass
from typing import Annotated

import typer

from postroom.cli.common import (
    MAX_ID,
    JsonOption,
    console,
    opened,
    print_json,
    run_command,
    styled,
    table,
)
from postroom.correspondence import versions
from postroom.correspondence.diffs import VersionDiff
from postroom.db.engine import reading

Name = Annotated[str, typer.Argument(metavar="NAME", help="The correspondence's name")]


def _number(metavar: str, help: str) -> object:
    return typer.Argument(metavar=metavar, min=1, max=MAX_ID, help=help, show_default=False)


def cli_writer() -> str:
    """Who a command saves as: ``cli:<OS user>``, or ``cli`` when the user is unknown."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name, nor a passwd entry (a bare container)
        return "cli"
    return f"cli:{user}"[:255] if user else "cli"


def register(app: typer.Typer) -> None:
    """Add the version commands to ``postroom correspondence``."""
    app.command("versions")(list_versions)
    app.command("diff")(diff_versions)
    app.command("restore")(restore_version)


def list_versions(name: Name, json: JsonOption = False) -> None:
    """List a correspondence's saved versions, newest first, with the emails each sent."""

    def body() -> None:
        with opened() as postroom, reading(postroom.engine) as conn:
            found = versions.history(conn, name)
        if json:
            from postroom.api.schemas.versions import HistoryView  # noqa: PLC0415 - web stack

            print_json(HistoryView.of(found).model_dump(mode="json"))
            return
        rows = table("version", "saved at", "saved by", "note", "emails", "subject")
        for v in found.versions:
            rows.add_row(
                f"{v.number}{' (current)' if v.current else ''}",
                f"{v.saved_at:%Y-%m-%d %H:%M:%S} UTC",
                v.saved_by,
                v.note or "",
                str(v.emails),
                "(fragment)" if v.subject is None else v.subject,
            )
        console.print(rows)
        if found.deleted:
            console.print(f"{name} is deleted; 'postroom correspondence restore' recreates it")

    run_command(body)


def diff_versions(
    name: Name,
    from_: Annotated[int, _number("FROM", "The older version")],
    to: Annotated[int | None, _number("TO", "The newer version (default: the current)")] = None,
    json: JsonOption = False,
) -> None:
    """Print what changed between two versions (FROM to TO) as a unified diff."""

    def body() -> None:
        with opened() as postroom, reading(postroom.engine) as conn:
            found = versions.diff(conn, name, from_, to)
        if json:
            from postroom.api.schemas.versions import DiffView  # noqa: PLC0415 - web stack

            print_json(DiffView.of(found).model_dump(mode="json", by_alias=True))
            return
        print_diff(found)

    run_command(body)


def print_diff(found: VersionDiff) -> None:
    if not found.changed:
        console.print(f"versions {found.old} and {found.new} of {found.name} are the same")
        return
    for line in found.unified.splitlines():
        style = next((st for prefix, st in _STYLES if line.startswith(prefix)), "")
        console.print(styled((line, style)) if style else line)


# The headers first: "---" would otherwise read as a removed line.
_STYLES = (("---", "bold"), ("+++", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def restore_version(
    name: Name, number: Annotated[int, _number("NUMBER", "The version to restore")]
) -> None:
    """Save an old version's content as the next version (checked as 'apply' checks)."""

    def body() -> None:
        with opened() as postroom:
            done = versions.restore(postroom, name, number, by=cli_writer())
        if done.change == "unchanged":
            console.print(f"{name} version {number} is the current content already: unchanged")
        else:
            console.print(
                f"{name}: version {number} restored as version {done.current} ({done.change})"
            )

    run_command(body)
