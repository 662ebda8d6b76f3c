"""Webhook endpoints and deliveries as records: apply, the facade, the REST API, the CLI
and the Studio accept, show and refuse alike; the signing secret is never shown."""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, ExistsError, NotFoundError, StateError
from postroom.web.render import NOTICE_COOKIE
from postroom.webhooks.deliveries import DeliveryOutcome
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import DeliveryStatus, EventType
from tests.apikit import MINIMAL_RECORDS, client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import csrf_of, log_in, studio_client

SECRET = "whsec_" + base64.b64encode(b"webhook-secret-that-is-never-shown").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-webhook-secret-never-shown").decode()
BAD_SECRET = "not-a-whsec-but-a-password-9f3k"
URL = "https://crm.example.com/postroom/events"


def endpoint(name: str = "crm", **changes: Any) -> dict[str, Any]:
    return {"name": name, "url": URL, "events": ["email.queued"], "secret": SECRET, **changes}


def deliveries_for(pr: Postroom, count: int) -> list[int]:
    """``count`` real email.queued deliveries to webhook crm, oldest first."""
    pr.apply(MINIMAL_RECORDS)
    for n in range(count):
        pr.send(to=[f"r{n}@example.com"], subject=f"s{n}", body="b")
    return sorted(d.id for d in pr.webhook_deliveries(limit=count))


def finish(pr: Postroom, status: DeliveryStatus, *, code: int | None, error: str | None) -> int:
    """Claim the next due delivery and record one attempt ending in ``status``."""
    with pr.engine.begin() as conn:
        [claimed] = pr.delivery_store.claim(conn, owner="test", limit=1, lease=30)
        outcome = DeliveryOutcome(
            id=claimed.id,
            status=status,
            at=utcnow(),
            duration_ms=12,
            status_code=code,
            error=error,
            next_attempt_at=utcnow() + timedelta(hours=1),
        )
        assert pr.delivery_store.record(conn, outcome, owner="test")
    return claimed.id


@pytest.fixture
def pr(postroom: Postroom) -> Postroom:
    postroom.apply({"webhooks": [endpoint()]})
    return postroom


# --- apply and the facade ---------------------------------------------------------------


def test_apply_takes_the_secret_from_the_environment_and_is_idempotent(
    sqlite_postroom: Postroom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET)
    path = tmp_path / "hooks.yaml"
    path.write_text(
        "webhooks:\n- name: crm\n  url: " + URL + "\n  events: [email.bounced, case.created]\n"
        "  secret: ${CRM_WEBHOOK_SECRET}\n"
    )
    first = sqlite_postroom.apply(path)
    assert first.changes == [("webhook", "crm", "created")]
    assert first.warnings == []
    assert sqlite_postroom.apply(path).changes == [("webhook", "crm", "unchanged")]
    stored = sqlite_postroom.webhook("crm")
    assert stored.secret.get_secret_value() == SECRET
    assert stored.events == [EventType.EMAIL_BOUNCED, EventType.CASE_CREATED]

    monkeypatch.setenv("CRM_WEBHOOK_SECRET", OTHER_SECRET)
    assert sqlite_postroom.apply(path).changes == [("webhook", "crm", "updated")]
    assert sqlite_postroom.webhook("crm").secret.get_secret_value() == OTHER_SECRET
    # In the database the secret is encrypted, not written as given.
    with sqlite_postroom.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT secret FROM webhook_endpoints").scalar_one()
    assert OTHER_SECRET not in raw


def test_an_inline_secret_is_warned_about_and_a_bad_one_is_not_echoed(
    sqlite_postroom: Postroom,
) -> None:
    report = sqlite_postroom.apply({"webhooks": [endpoint()]})
    assert report.warnings == [
        "webhooks[0] (crm): the secret is written in the file; prefer ${ENV_VAR}"
    ]
    with pytest.raises(ConfigurationError) as refused:
        sqlite_postroom.apply({"webhooks": [endpoint("b", secret=BAD_SECRET)]})
    assert str(refused.value) == (
        "webhooks[0] (b): secret: must start with whsec_ (a Standard Webhooks secret)"
    )
    with pytest.raises(ConfigurationError) as short:
        sqlite_postroom.apply({"webhooks": [endpoint("b", secret="whsec_c2hvcnQ=")]})
    assert "secret: must hold 24 to 64 random bytes, not 5" in str(short.value)
    with pytest.raises(ConfigurationError, match=r"events\.0: Input should be 'email\.queued'"):
        sqlite_postroom.apply({"webhooks": [endpoint("b", events=["email.opened"])]})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://10.0.0.5/hook", "10.0.0.5 is a private address"),
        ("https://169.254.169.254/latest", "169.254.169.254 is a cloud metadata address"),
        ("https://metadata.google.internal/x", "metadata.google.internal is a cloud metadata name"),
        ("https://[::1]:8443/x", "::1 is a loopback address"),
        ("https://localhost/x", "localhost is a local name"),
        ("https://100.64.0.9/x", "100.64.0.9 is a CGNAT address"),
        ("http://crm.example.com/x", "must use https://"),
    ],
)
def test_urls_that_reach_inside_are_refused_at_save(
    sqlite_postroom: Postroom, url: str, why: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        sqlite_postroom.put_webhook(WebhookEndpoint.model_validate(endpoint(url=url)))
    message = str(refused.value)
    assert message.startswith(f"webhook crm: url {url}: ")
    assert why in message
    assert "POSTROOM_ALLOWED_ENDPOINT_HOSTS" in message
    assert sqlite_postroom.webhooks() == []


def test_an_allowed_host_may_be_private_and_use_http(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'p.db'}", allowed_endpoint_hosts="127.0.0.1, hooks.internal"
    )
    with Postroom(settings) as pr:
        for url in ("http://127.0.0.1:8080/hook", "http://hooks.internal/x"):
            hook = WebhookEndpoint.model_validate(endpoint(url=url))
            assert pr.put_webhook(hook) in ("created", "updated")
            assert pr.webhook("crm").url == url


def test_the_facade_creates_lists_and_deletes(sqlite_postroom: Postroom) -> None:
    hook = WebhookEndpoint.model_validate(endpoint())
    assert sqlite_postroom.put_webhook(hook, create=True) == "created"
    with pytest.raises(ExistsError):
        sqlite_postroom.put_webhook(hook, create=True)
    assert [h.name for h in sqlite_postroom.webhooks()] == ["crm"]
    sqlite_postroom.delete_webhook("crm")
    with pytest.raises(NotFoundError, match="no webhook named 'crm'"):
        sqlite_postroom.webhook("crm")
    with pytest.raises(NotFoundError):
        sqlite_postroom.delete_webhook("crm")


# --- deliveries through the facade ------------------------------------------------------


def test_redeliver_reopens_a_finished_delivery_and_refuses_otherwise(pr: Postroom) -> None:
    first, second, third = deliveries_for(pr, 3)
    assert finish(pr, DeliveryStatus.DELIVERED, code=204, error=None) == first
    assert (
        finish(pr, DeliveryStatus.FAILED, code=503, error="HTTP 503 Service Unavailable; gave up")
        == second
    )

    with pytest.raises(StateError, match=f"#{third} is pending: it is on its way already"):
        pr.redeliver_webhook(third)
    again = pr.redeliver_webhook(first, actor="test")
    assert again.status is DeliveryStatus.PENDING
    assert again.attempts == 1  # the attempts so far are kept
    assert [a.status_code for a in pr.webhook_attempts(first)] == [204]

    pr.put_webhook(WebhookEndpoint.model_validate(endpoint(enabled=False)))
    with pytest.raises(StateError, match="webhook crm is disabled; enable it first"):
        pr.redeliver_webhook(second)
    pr.delete_webhook("crm")
    with pytest.raises(StateError, match="webhook crm was deleted"):
        pr.redeliver_webhook(second)
    with pytest.raises(NotFoundError, match="no webhook delivery #999"):
        pr.redeliver_webhook(999)
    with pytest.raises(NotFoundError):
        pr.webhook_attempts(999)
    assert pr.webhook_counts()[DeliveryStatus.PENDING] == 2


# --- the REST API ---------------------------------------------------------------------


def test_the_api_writes_endpoints_with_a_write_only_secret(
    pr: Postroom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = issue_tokens(pr)
    with client(pr) as c:
        made = c.post("/api/v1/webhooks", headers=tokens.admin, json=endpoint("erp"))
        assert made.status_code == 201, made.text
        assert made.json() == {
            "name": "erp",
            "url": URL,
            "events": ["email.queued"],
            "secret_set": True,
            "enabled": True,
            "description": "",
        }
        again = c.post("/api/v1/webhooks", headers=tokens.admin, json=endpoint("erp"))
        assert again.status_code == 409
        assert again.json()["type"].endswith("/exists")
        # PUT without the secret keeps the stored one.
        changed = endpoint("erp", events=["email.sent", "email.failed"], enabled=False)
        del changed["secret"]
        put = c.put("/api/v1/webhooks/erp", headers=tokens.admin, json=changed)
        assert put.status_code == 200, put.text
        assert put.json()["events"] == ["email.sent", "email.failed"]
        assert pr.webhook("erp").secret.get_secret_value() == SECRET
        # Created without a secret: refused, naming the field.
        lacking = {k: v for k, v in endpoint("new").items() if k != "secret"}
        missing = c.post("/api/v1/webhooks", headers=tokens.admin, json=lacking)
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "body.secret"
        bad = c.post(
            "/api/v1/webhooks", headers=tokens.admin, json=endpoint("b", secret=BAD_SECRET)
        )
        assert bad.status_code == 422
        assert bad.json()["detail"] == (
            "body.secret: must start with whsec_ (a Standard Webhooks secret)"
        )
        inside = c.post(
            "/api/v1/webhooks", headers=tokens.admin, json=endpoint("b", url="https://10.1.2.3/")
        )
        assert inside.status_code == 422
        assert "10.1.2.3 is a private address" in inside.json()["detail"]
        listed = c.get("/api/v1/webhooks", headers=tokens.admin)
        assert [h["name"] for h in listed.json()] == ["crm", "erp"]
        assert c.get("/api/v1/webhooks", headers=tokens.send).status_code == 403
        assert c.delete("/api/v1/webhooks/erp", headers=tokens.admin).status_code == 204
        assert c.get("/api/v1/webhooks/erp", headers=tokens.admin).status_code == 404
        texts = [made.text, put.text, bad.text, missing.text, listed.text]
    for text in [*texts, caplog.text]:
        assert SECRET not in text
        assert BAD_SECRET not in text


def test_the_api_lists_pages_shows_and_redelivers_deliveries(pr: Postroom) -> None:
    first, second, third = deliveries_for(pr, 3)
    finish(pr, DeliveryStatus.FAILED, code=None, error="connection refused")
    tokens = issue_tokens(pr)
    with client(pr) as c:
        page = c.get("/api/v1/webhook-deliveries?limit=2", headers=tokens.admin)
        assert page.status_code == 200
        body = page.json()
        assert [d["id"] for d in body["items"]] == [third, second]
        assert body["next"].endswith(f"before_id={second}")
        rest = c.get("/api/v1" + body["next"].split("/api/v1", 1)[1], headers=tokens.admin)
        assert [d["id"] for d in rest.json()["items"]] == [first]
        assert rest.json()["next"] is None
        failed = c.get("/api/v1/webhook-deliveries?status=failed", headers=tokens.admin).json()
        assert [d["id"] for d in failed["items"]] == [first]
        assert failed["items"][0]["last_error"] == "connection refused"
        assert failed["items"][0]["next_attempt_at"] is None
        none = c.get(
            "/api/v1/webhook-deliveries?endpoint=crm&event_type=email.sent", headers=tokens.admin
        )
        assert none.json()["items"] == []
        wrong = c.get("/api/v1/webhook-deliveries?status=lost", headers=tokens.admin)
        assert wrong.status_code == 422

        one = c.get(f"/api/v1/webhook-deliveries/{first}", headers=tokens.admin).json()
        assert one["payload"]["type"] == "email.queued"
        assert one["payload"]["data"]["email_id"] > 0
        assert [(a["status_code"], a["error"]) for a in one["attempt_log"]] == [
            (None, "connection refused")
        ]
        redone = c.post(f"/api/v1/webhook-deliveries/{first}/redeliver", headers=tokens.admin)
        assert redone.status_code == 200
        assert redone.json()["status"] == "pending"
        assert redone.json()["event_id"] == one["event_id"]  # the same webhook-id
        twice = c.post(f"/api/v1/webhook-deliveries/{first}/redeliver", headers=tokens.admin)
        assert twice.status_code == 409
        assert c.get("/api/v1/webhook-deliveries/999", headers=tokens.admin).status_code == 404
        send_token = c.get("/api/v1/webhook-deliveries", headers=tokens.send)
        assert send_token.status_code == 403


# --- the CLI --------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[str], Postroom]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    with Postroom(make_settings(url)) as opened:
        opened.apply({"webhooks": [endpoint()]})
        yield ["--database-url", url], opened


def test_the_cli_prints_the_api_views(cli: tuple[list[str], Postroom]) -> None:
    db, pr = cli
    first, second = deliveries_for(pr, 2)
    finish(pr, DeliveryStatus.DELIVERED, code=200, error=None)
    runner = CliRunner()
    tokens = issue_tokens(pr)
    with client(pr) as c:
        api = c.get("/api/v1/webhooks", headers=tokens.admin).json()
        listed = c.get("/api/v1/webhook-deliveries", headers=tokens.admin).json()["items"]
        detail = c.get(f"/api/v1/webhook-deliveries/{first}", headers=tokens.admin).json()
    outputs = []
    for args, expected in [
        (["webhooks", "list", "--json"], api),
        (["webhooks", "show", "crm", "--json"], api[0]),
        (["webhooks", "deliveries", "--json"], listed),
        (["webhooks", "delivery", str(first), "--json"], detail),
    ]:
        result = runner.invoke(app, [*db, *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == expected, args
        outputs.append(result.output)
    table = runner.invoke(app, [*db, "webhooks", "delivery", str(first)])
    assert table.exit_code == 0, table.output
    assert "HTTP 200" in table.output
    assert '"type": "email.queued"' in table.output
    pending = runner.invoke(app, [*db, "webhooks", "deliveries", "--status", "pending"])
    assert f"│ {second} " in pending.output
    assert f"│ {first} " not in pending.output
    for output in [*outputs, table.output, pending.output]:
        assert SECRET not in output


def test_the_cli_redelivers_and_refuses_clearly(cli: tuple[list[str], Postroom]) -> None:
    db, pr = cli
    [only] = deliveries_for(pr, 1)
    runner = CliRunner()
    busy = runner.invoke(app, [*db, "webhooks", "redeliver", str(only)])
    assert busy.exit_code != 0
    assert (
        busy.output.strip()
        == f"error: webhook delivery #{only} is pending: it is on its way already"
    )
    finish(pr, DeliveryStatus.FAILED, code=500, error="HTTP 500")
    done = runner.invoke(app, [*db, "webhooks", "redeliver", str(only)])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == (
        f"webhook delivery #{only} (email.queued to crm) is pending again"
    )
    bad = runner.invoke(app, [*db, "webhooks", "deliveries", "--event", "email.opened"])
    assert bad.exit_code != 0
    assert bad.output.startswith("error: unknown event type 'email.opened'; known: email.queued")
    gone = runner.invoke(app, [*db, "webhooks", "delivery", "404"])
    assert gone.output.strip() == "error: no webhook delivery #404"
    deleted = runner.invoke(app, [*db, "webhooks", "delete", "crm"])
    assert deleted.output.strip() == "webhook crm deleted"


# --- the Studio -----------------------------------------------------------------------


def test_the_studio_creates_and_edits_with_a_write_only_secret(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    with studio_client(pr) as c:
        csrf = log_in(c)
        form = {"csrf_token": csrf, "name": "crm", "url": URL, "events": ["email.sent"]}
        bad = c.post("/webhooks", data={**form, "secret": BAD_SECRET})
        assert bad.status_code == 422
        text = html.unescape(bad.text)
        assert "secret: must start with whsec_" in text
        assert BAD_SECRET not in bad.text
        private = c.post("/webhooks", data={**form, "secret": SECRET, "url": "https://10.9.8.7/"})
        assert private.status_code == 422
        assert "10.9.8.7 is a private address" in html.unescape(private.text)
        assert SECRET not in private.text
        none = c.post("/webhooks", data={**form, "events": [], "secret": SECRET})
        assert "events: choose at least one event type" in html.unescape(none.text)

        made = c.post("/webhooks", data={**form, "secret": SECRET, "enabled": "on"})
        assert made.status_code == 200  # followed to the webhook's page
        assert made.url.path == "/webhooks/crm"
        assert "A secret is set" in made.text
        assert SECRET not in made.text
        # Saved again with the secret left empty: the stored one stays.
        edited = {**form, "events": ["email.sent", "case.created"], "secret": ""}
        c.post("/webhooks/crm", data=edited)
        kept = pr.webhook("crm")
        assert kept.secret.get_secret_value() == SECRET
        assert kept.events == [EventType.EMAIL_SENT, EventType.CASE_CREATED]
        assert kept.enabled is False  # the box was left unticked
        listing = c.get("/webhooks")
        assert 'data-webhook="crm"' in listing.text
        assert SECRET not in listing.text


def test_the_studio_shows_deliveries_and_redelivers(pr: Postroom) -> None:
    first, second = deliveries_for(pr, 2)
    finish(pr, DeliveryStatus.FAILED, code=503, error="HTTP 503 Service Unavailable")
    with studio_client(pr) as c:
        log_in(c)
        failed = c.get("/webhooks?status=failed")
        assert f'data-delivery="{first}"' in failed.text
        assert f'data-delivery="{second}"' not in failed.text
        shown = c.get(f"/webhooks/deliveries/{first}")
        assert shown.status_code == 200
        assert "HTTP 503 Service Unavailable" in shown.text
        assert "&#34;type&#34;: &#34;email.queued&#34;" in shown.text
        redo = c.post(
            f"/webhooks/deliveries/{first}/redeliver",
            data={"csrf_token": csrf_of(shown.text)},
            follow_redirects=False,
        )
        assert redo.status_code == 303
        assert pr.webhook_delivery(first).status is DeliveryStatus.PENDING
        pending = c.get(f"/webhooks/deliveries/{second}")
        assert 'id="redeliver"' not in pending.text
        refused = c.post(
            f"/webhooks/deliveries/{second}/redeliver",
            data={"csrf_token": csrf_of(pending.text)},
            follow_redirects=False,
        )
        assert refused.status_code == 303
        assert unquote(c.cookies.get(NOTICE_COOKIE) or "") == (
            f"error:Not sent again: webhook delivery #{second} is pending: it is on its way already"
        )
        assert c.get(f"/webhooks/deliveries/{404}").status_code == 404
