"""Record commands built from the record descriptions (:mod:`postroom.catalog`).

``postroom operators|correspondence|case-types list|show|delete``, and the ``--json``
output and ``delete`` the other record commands share. ``--json`` prints the REST API's
view of a record, key for key: secrets appear only as ``*_set`` flags.
"""

# No ``from __future__ import annotations``: Typer reads the commands' annotations, and
# those built here name the record kind of the enclosing function.
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel

from postroom import catalog
from postroom.catalog import RecordKind
from postroom.cli.common import (
    JsonOption,
    console,
    id_column,
    opened,
    print_json,
    run_command,
    table,
)

Row = Callable[[dict[str, Any]], Sequence[str]]


def cell(value: Any) -> str:
    """A value as a table shows it: nested ones as YAML, missing ones as '-'."""
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip()
    return str(value)


def print_records(kind: RecordKind, found: Sequence[BaseModel], *, json: bool) -> bool:
    """Print ``found`` as JSON when asked (True), else leave the table to the caller."""
    if json:
        print_json([kind.as_json(r) for r in found])
    return json


def list_command(kind: RecordKind, columns: Sequence[str], row: Row) -> Callable[..., None]:
    """``list``: a table of ``columns`` (the first is the key), or the views as JSON."""

    def list_records(json: JsonOption = False) -> None:
        def body() -> None:
            with opened() as postroom:
                found = catalog.records(postroom, kind)
            if print_records(kind, found, json=json):
                return
            views = [kind.as_json(r) for r in found]
            rows = table(id_column(columns[0], (v[kind.key] for v in views)), *columns[1:])
            for view in views:
                rows.add_row(*row(view))
            console.print(rows)

        run_command(body)

    list_records.__doc__ = f"List {kind.plural.lower()}."
    return list_records


def show_command(kind: RecordKind) -> Callable[..., None]:
    """``show KEY``: every field of the record's view, or the view as JSON."""

    def show_record(
        key: Annotated[str, typer.Argument(metavar=kind.key.upper())], json: JsonOption = False
    ) -> None:
        def body() -> None:
            with opened() as postroom:
                view = kind.as_json(catalog.record(postroom, kind, key))
            if json:
                print_json(view)
                return
            rows = table("field", "value")
            rows.show_header = False
            for field, value in view.items():
                rows.add_row(field, cell(value))
            console.print(rows)

        run_command(body)

    show_record.__doc__ = f"Show one {kind.name} (as the REST API shows it)."
    return show_record


def delete_command(kind: RecordKind) -> Callable[..., None]:
    """``delete KEY``: refused, exit code 4, while something still uses the record."""

    def delete_record(key: Annotated[str, typer.Argument(metavar=kind.key.upper())]) -> None:
        def body() -> None:
            with opened() as postroom:
                catalog.delete(postroom, kind, key)
            console.print(f"{kind.name} {key} deleted")

        run_command(body)

    delete_record.__doc__ = (
        f"Delete {kind.a} (refused, naming the user, while anything still uses it)."
    )
    return delete_record


def kind_app(kind: RecordKind, columns: Sequence[str], row: Row) -> typer.Typer:
    """A sub-command group with ``list``, ``show`` and ``delete`` for ``kind``."""
    app = typer.Typer(
        help=f"{kind.plural}: list, show, delete (create and update with 'postroom apply').",
        no_args_is_help=True,
    )
    app.command("list")(list_command(kind, columns, row))
    app.command("show")(show_command(kind))
    app.command("delete")(delete_command(kind))
    return app


def _case_type_row(v: dict[str, Any]) -> Sequence[str]:
    return (v["class"], cell(v["label"]), v["class_group"], v["id_prefix"], str(len(v["steps"])))


operators_app = kind_app(
    catalog.OPERATORS,
    ("id", "name", "email", "reports to"),
    lambda v: (v["id"], v["name"], cell(v["email"]), cell(v["reports_to"])),
)
correspondence_app = kind_app(
    catalog.CORRESPONDENCE,
    ("name", "subject"),
    lambda v: (v["name"], "(fragment)" if v["subject"] is None else v["subject"]),
)
case_types_app = kind_app(
    catalog.CASE_TYPES, ("class", "label", "class group", "id prefix", "steps"), _case_type_row
)
