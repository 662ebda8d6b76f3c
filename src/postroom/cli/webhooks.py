"""``postroom webhooks …``: endpoints, and deliveries with their attempts; redeliver."""

from __future__ import annotations

import typer

webhooks_app = typer.Typer(
    help="Webhooks: endpoints, deliveries and their attempts; redeliver.", no_args_is_help=True
)
