"""``postroom suppressions list|add|remove``: the addresses Postroom does not send to."""

from __future__ import annotations

import typer

suppressions_app = typer.Typer(
    help="The suppression list: addresses Postroom does not send to.", no_args_is_help=True
)
