"""Webhooks: endpoints (list, create, edit; the secret write-only), deliveries with their
attempts and payload, redeliver."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from postroom.errors import PostroomError, StateError
from postroom.web import forms
from postroom.web.pages.bounds import OlderThan, RecordId
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import DeliveryStatus, EventType

router = APIRouter()
PAGE_SIZE = 50
_FIELDS = ("name", "url", "description")


def _chosen(enum: Any, value: str) -> Any:
    return enum(value) if value in {m.value for m in enum} else None


@router.get("/webhooks")
def list_webhooks(
    request: Request,
    auth: LoggedIn,
    *,
    status: str = "",
    endpoint: str = "",
    event: str = "",
    before: OlderThan = None,
) -> Response:
    pr = postroom_of(request)
    found = pr.webhook_deliveries(
        status=_chosen(DeliveryStatus, status),
        endpoint=endpoint or None,
        event_type=_chosen(EventType, event),
        limit=PAGE_SIZE + 1,
        before_id=before,
    )
    older = None
    if len(found) > PAGE_SIZE:
        filters = {"status": status, "endpoint": endpoint, "event": event}
        kept = {k: v for k, v in filters.items() if v}
        older = "/webhooks?" + urlencode({**kept, "before": found[PAGE_SIZE - 1].id})
    return page(
        request,
        "webhooks.html",
        auth,
        title="Webhooks",
        endpoints=pr.webhooks(),
        deliveries=found[:PAGE_SIZE],
        counts=pr.webhook_counts(),
        statuses=[s.value for s in DeliveryStatus],
        event_types=[e.value for e in EventType],
        f={"status": status, "endpoint": endpoint, "event": event, "before": before},
        older=older,
    )


def _values(endpoint: WebhookEndpoint | None) -> dict[str, Any]:
    if endpoint is None:
        return {"name": "", "url": "https://", "description": "", "events": [], "enabled": True}
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": [e.value for e in endpoint.events],
        "enabled": endpoint.enabled,
    }


def _form(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, Any],
    existing: WebhookEndpoint | None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "webhook_form.html",
        auth,
        status_code=status_code,
        title=f"Webhook {existing.name}" if existing else "New webhook",
        v=values,
        existing=existing,
        event_types=[e.value for e in EventType],
        error=error,
    )


@router.get("/webhooks/new")
def new_webhook(request: Request, auth: LoggedIn) -> Response:
    return _form(request, auth, values=_values(None), existing=None)


@router.get("/webhooks/{name}")
def show_webhook(request: Request, auth: LoggedIn, name: str) -> Response:
    endpoint = postroom_of(request).webhook(name)
    return _form(request, auth, values=_values(endpoint), existing=endpoint)


def _save(request: Request, auth: Auth, form: Any, existing: WebhookEndpoint | None) -> Response:
    pr = postroom_of(request)
    values: dict[str, Any] = {f: forms.text(form, f) for f in _FIELDS}
    values["events"] = [e for e in form.getlist("events") if isinstance(e, str)]
    values["enabled"] = forms.checked(form, "enabled")
    if existing is not None:
        values["name"] = existing.name
    data: dict[str, Any] = dict(values)
    secret = forms.text(form, "secret")
    if secret:
        data["secret"] = secret
    elif existing is not None:
        data["secret"] = existing.secret  # empty keeps the stored secret
    try:
        if not values["events"]:
            raise ValueError("events: choose at least one event type")
        endpoint = WebhookEndpoint.model_validate(data)
        change = pr.put_webhook(endpoint, create=existing is None)
    except (ValidationError, PostroomError, ValueError) as exc:
        # The secret is never rendered back: the form asks for it again.
        return _form(
            request,
            auth,
            values=values,
            existing=existing,
            error=forms.problem(exc),
            status_code=422,
        )
    return redirect(
        request, f"/webhooks/{quote(endpoint.name, safe='')}", f"Webhook {endpoint.name}: {change}."
    )


@router.post("/webhooks")
def create_webhook(request: Request, auth: LoggedIn, form: Form) -> Response:
    return _save(request, auth, form, None)


@router.post("/webhooks/{name}")
def update_webhook(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    return _save(request, auth, form, postroom_of(request).webhook(name))


@router.get("/webhooks/deliveries/{delivery_id}")
def show_delivery(request: Request, auth: LoggedIn, delivery_id: RecordId) -> Response:
    pr = postroom_of(request)
    delivery = pr.webhook_delivery(delivery_id)
    payload = json.dumps(json.loads(delivery.payload), indent=2, ensure_ascii=False)
    return page(
        request,
        "webhook_delivery.html",
        auth,
        title=f"Webhook delivery #{delivery.id}",
        d=delivery,
        attempts=pr.webhook_attempts(delivery_id),
        payload=payload,
        can_redeliver=delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED),
    )


@router.post("/webhooks/deliveries/{delivery_id}/redeliver")
def redeliver(request: Request, auth: LoggedIn, form: Form, delivery_id: RecordId) -> Response:
    pr = postroom_of(request)
    back = f"/webhooks/deliveries/{delivery_id}"
    try:
        again = pr.redeliver_webhook(delivery_id, actor=auth.username)
    except StateError as exc:
        return redirect(request, back, f"Not sent again: {exc}", level="error")
    return redirect(request, back, f"Delivery #{again.id} is {again.status} again.")
