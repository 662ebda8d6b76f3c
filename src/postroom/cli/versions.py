"""``postroom correspondence versions|diff|restore``: a correspondence's saved versions."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the version commands to ``postroom correspondence``."""
