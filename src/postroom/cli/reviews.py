"""``postroom reviews``: emails waiting for their reviewer."""

from __future__ import annotations

import typer

reviews_app = typer.Typer(help="Emails waiting for their reviewer: list, show, approve, reject.")
