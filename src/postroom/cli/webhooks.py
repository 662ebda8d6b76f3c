"""``postroom webhooks …``: endpoints, and deliveries with their attempts; redeliver."""

# No ``from __future__ import annotations``: Typer reads the commands' annotations.
import json as jsonlib
from typing import Annotated, Any

import typer

from postroom import catalog
from postroom.cli.common import (
    JsonOption,
    console,
    count_option,
    id_argument,
    id_column,
    id_option,
    opened,
    print_json,
    run_command,
    table,
)
from postroom.cli.kinds import cell, delete_command, list_command, show_command
from postroom.errors import ConfigurationError
from postroom.webhooks.models import DeliveryStatus, EventType, WebhookAttempt, WebhookDelivery

webhooks_app = typer.Typer(
    help="Webhooks: endpoints (list, show, delete; create and update with 'postroom apply'), "
    "deliveries and their attempts; redeliver.",
    no_args_is_help=True,
)
DeliveryArgument = Annotated[int, id_argument("The delivery's id", metavar="ID")]


def _endpoint_row(v: dict[str, Any]) -> tuple[str, ...]:
    return (
        v["name"],
        v["url"],
        ", ".join(v["events"]),
        "yes" if v["enabled"] else "no",
        "set" if v["secret_set"] else "-",
    )


webhooks_app.command("list")(
    list_command(catalog.WEBHOOKS, ("name", "url", "events", "enabled", "secret"), _endpoint_row)
)
webhooks_app.command("show")(show_command(catalog.WEBHOOKS))
webhooks_app.command("delete")(delete_command(catalog.WEBHOOKS))


def _choice(enum: Any, value: str | None, *, what: str) -> Any:
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(m.value for m in enum)
        raise ConfigurationError(f"unknown {what} {value!r}; known: {known}") from None


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """A delivery as ``--json`` prints it: the view the REST API answers with."""
    from postroom.api.schemas.webhooks import DeliveryView  # noqa: PLC0415

    return DeliveryView.of(delivery).model_dump(mode="json")


def detail_json(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    from postroom.api.schemas.webhooks import DeliveryDetail  # noqa: PLC0415

    return DeliveryDetail.with_attempts(delivery, attempts).model_dump(mode="json")


def _when(delivery: WebhookDelivery) -> str:
    if delivery.status is DeliveryStatus.PENDING:
        return f"next {delivery.next_attempt_at:%Y-%m-%d %H:%M:%S}"
    if delivery.delivered_at is not None:
        return f"{delivery.delivered_at:%Y-%m-%d %H:%M:%S}"
    return "-"


@webhooks_app.command("deliveries")
def list_deliveries(
    status: Annotated[
        str | None, typer.Option(help="pending, sending, delivered or failed")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this webhook's deliveries")] = None,
    event: Annotated[
        str | None, typer.Option(help="Only this event type (email.bounced...)")
    ] = None,
    limit: Annotated[int, count_option("How many deliveries", most=500)] = 50,
    before: Annotated[int | None, id_option("Only deliveries older than this id (paging)")] = None,
    json: JsonOption = False,
) -> None:
    """List webhook deliveries, newest first."""

    def body() -> None:
        chosen = _choice(DeliveryStatus, status, what="status")
        kind = _choice(EventType, event, what="event type")
        with opened() as postroom:
            found = postroom.webhook_deliveries(
                status=chosen, endpoint=endpoint, event_type=kind, limit=limit, before_id=before
            )
        if json:
            print_json([delivery_json(d) for d in found])
            return
        rows = table(
            id_column("id", (str(d.id) for d in found)),
            "created",
            "event",
            "webhook",
            "status",
            "attempts",
            "last answer",
            "delivered / next",
        )
        for d in found:
            rows.add_row(
                str(d.id),
                f"{d.created_at:%Y-%m-%d %H:%M:%S}",
                d.event_type.value,
                d.endpoint,
                d.status.value,
                str(d.attempts),
                _answer(d.last_code, d.last_error),
                _when(d),
            )
        console.print(rows)

    run_command(body)


def _answer(code: int | None, error: str | None) -> str:
    """What the endpoint answered; the error names the HTTP status when there was one."""
    if error:
        named = code is None or error.startswith("HTTP")
        return error if named else f"HTTP {code}: {error}"
    return "-" if code is None else f"HTTP {code}"


@webhooks_app.command("delivery")
def show_delivery(delivery_id: DeliveryArgument, json: JsonOption = False) -> None:
    """Show a delivery: its event, payload and every attempt."""

    def body() -> None:
        with opened() as postroom:
            delivery = postroom.webhook_delivery(delivery_id)
            attempts = postroom.webhook_attempts(delivery_id)
        if json:
            print_json(detail_json(delivery, attempts))
            return
        print_delivery(delivery, attempts)

    run_command(body)


def print_delivery(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> None:
    """A delivery's fields, its attempts as a table and its payload as indented JSON."""
    rows = table("field", "value")
    rows.show_header = False
    for field, value in (
        ("id", delivery.id),
        ("webhook-id", delivery.event_id),
        ("event", delivery.event_type.value),
        ("webhook", delivery.endpoint),
        ("status", delivery.status.value),
        ("attempts", delivery.attempts),
        ("created", f"{delivery.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("delivered / next", _when(delivery)),
        ("last answer", _answer(delivery.last_code, delivery.last_error)),
    ):
        rows.add_row(field, cell(value))
    console.print(rows)
    tries = table("#", "at", "answer", "took", title="Attempts")
    for number, attempt in enumerate(attempts, start=1):
        tries.add_row(
            str(number),
            f"{attempt.at:%Y-%m-%d %H:%M:%S}",
            _answer(attempt.status_code, attempt.error),
            f"{attempt.duration_ms} ms",
        )
    if not attempts:
        tries.add_row("-", "-", "not tried yet", "-")
    console.print(tries)
    console.print("payload:")
    payload = jsonlib.dumps(jsonlib.loads(delivery.payload), indent=2, ensure_ascii=False)
    console.print(payload, markup=False, highlight=False)


@webhooks_app.command("redeliver")
def redeliver(delivery_id: DeliveryArgument) -> None:
    """Send a delivered or failed delivery again now (same webhook-id, a new retry window)."""

    def body() -> None:
        with opened() as postroom:
            delivery = postroom.redeliver_webhook(delivery_id, actor="cli")
        console.print(
            f"webhook delivery #{delivery.id} ({delivery.event_type.value} to "
            f"{delivery.endpoint}) is pending again"
        )

    run_command(body)
