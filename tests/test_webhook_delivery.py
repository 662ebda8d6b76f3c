"""Webhook delivery to a real receiver on loopback: signatures, retries, outages, SSRF, leases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from standardwebhooks import Webhook, WebhookVerificationError
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app as cli_app
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, TransientDeliveryError
from postroom.server import create_app
from postroom.webhooks import DeliveryStatus, Event, EventType, emit
from postroom.webhooks.deliveries import DeliveryOutcome
from postroom.webhooks.dispatcher import (
    DispatchConfig,
    DispatchStats,
    WebhookDispatcher,
    dispatcher_for,
)
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import WebhookDelivery
from postroom.webhooks.urls import check_webhook_url
from tests.conftest import TEST_KEY, make_settings
from tests.dovecotkit import wait_until
from tests.fakes import smtp_server
from tests.webhookkit import SECRET, Receiver, new_secret, receiver


def open_postroom(database_url: str, **overrides: Any) -> Postroom:
    values: dict[str, Any] = {
        "allowed_endpoint_hosts": "127.0.0.1",
        "webhook_backoff_base": 0.2,
        "webhook_backoff_max": 1.0,
        "webhook_timeout": 5.0,
        **overrides,
    }
    return Postroom(make_settings(database_url, **values))


@pytest.fixture
def pr(database_url: str) -> Iterator[Postroom]:
    """On SQLite and on PostgreSQL."""
    with open_postroom(database_url) as postroom:
        yield postroom


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Postroom]:
    """On SQLite only: for what does not depend on the database."""
    with open_postroom(f"sqlite:///{tmp_path / 'p.db'}") as postroom:
        yield postroom


def add_endpoint(
    pr: Postroom,
    url: str,
    *,
    name: str = "app",
    events: Sequence[EventType] = (EventType.CASE_CREATED,),
    secret: str = SECRET,
    enabled: bool = True,
) -> None:
    # Written through the store: the facade would refuse the unsafe URLs these tests need.
    endpoint = WebhookEndpoint(
        name=name, url=url, events=list(events), secret=secret, enabled=enabled
    )
    with pr.engine.begin() as conn:
        pr.webhook_store.put(conn, endpoint)


def emit_cases(pr: Postroom, count: int) -> list[str]:
    events = [
        Event(EventType.CASE_CREATED, {"case_id": f"C-{i}", "case_type": "A-B-C"})
        for i in range(count)
    ]
    with pr.engine.begin() as conn:
        return emit(conn, events)


def deliveries(pr: Postroom) -> list[WebhookDelivery]:
    with pr.engine.connect() as conn:
        return pr.delivery_store.list(conn, limit=1000)


def statuses(pr: Postroom) -> list[DeliveryStatus]:
    return [d.status for d in deliveries(pr)]


def deliver_until_idle(pr: Postroom) -> DispatchStats:
    return asyncio.run(dispatcher_for(pr).run(stop=asyncio.Event(), until_idle=True))


@contextmanager
def running(*workers: Any) -> Iterator[None]:
    """Run ``workers`` (dispatchers, agents) in a thread's event loop until the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await asyncio.gather(*(w.run(stop=box["stop"]) for w in workers))

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # said by the test's thread
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert ready.wait(10), "the workers did not start"
    try:
        yield
    finally:
        if "stop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the workers did not stop"
    if "error" in box:
        raise box["error"]


# --- signing ---------------------------------------------------------------------------


def test_every_request_verifies_with_standard_webhooks(pr: Postroom) -> None:
    with receiver() as hook:
        add_endpoint(pr, hook.url)
        ids = emit_cases(pr, 3)
        stats = deliver_until_idle(pr)

    assert stats.delivered == 3
    assert sorted(hook.ids()) == sorted(ids)
    for request in hook.requests:
        assert request.verified, request.headers
        assert request.path == "/hooks/postroom"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("Postroom")
        assert request.payload["type"] == "case.created"
        assert request.payload["data"]["case_type"] == "A-B-C"
    assert statuses(pr) == [DeliveryStatus.DELIVERED] * 3
    [one, *_] = deliveries(pr)
    assert one.attempts == 1
    assert one.last_code == 204
    assert one.delivered_at is not None
    with pr.engine.connect() as conn:
        [attempt] = pr.delivery_store.attempts(conn, one.id)
    assert attempt.status_code == 204
    assert attempt.error is None
    # The body sent is the payload stored, byte for byte.
    sent = {r.event_id: r.body.decode() for r in hook.requests}
    assert all(sent[d.event_id] == d.payload for d in deliveries(pr))


def test_a_tampered_body_or_another_secret_fails_verification(lite: Postroom) -> None:
    pr = lite
    with receiver() as hook:
        add_endpoint(pr, hook.url)
        emit_cases(pr, 1)
        deliver_until_idle(pr)
    [request] = hook.requests
    assert Webhook(SECRET).verify(request.body, request.headers)["type"] == "case.created"
    tampered = request.body.replace(b"C-0", b"C-9")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


def test_a_receiver_with_another_secret_sees_unverified_requests(lite: Postroom) -> None:
    pr = lite
    with receiver(new_secret()) as hook:
        add_endpoint(pr, hook.url)  # signed with SECRET, checked with another
        emit_cases(pr, 1)
        deliver_until_idle(pr)
    [request] = hook.requests
    assert not request.verified


# --- retries ---------------------------------------------------------------------------


def test_errors_are_retried_with_the_same_id_and_body(pr: Postroom) -> None:
    with receiver() as hook:
        hook.behaviour.first_tries = [500, 429]
        add_endpoint(pr, hook.url)
        [event_id] = emit_cases(pr, 1)
        with running(dispatcher_for(pr)):
            wait_until(lambda: statuses(pr) == [DeliveryStatus.DELIVERED], what="delivered")

    assert [r.answered for r in hook.requests] == [500, 429, 204]
    assert {r.event_id for r in hook.requests} == {event_id}
    assert len({r.body for r in hook.requests}) == 1
    assert all(r.verified for r in hook.requests)
    [delivery] = deliveries(pr)
    assert delivery.attempts == 3
    with pr.engine.connect() as conn:
        tries = pr.delivery_store.attempts(conn, delivery.id)
    assert [t.status_code for t in tries] == [500, 429, 204]
    assert tries[0].error == "HTTP 500 Internal Server Error"
    assert tries[1].error == "HTTP 429 Too Many Requests"


def test_410_gone_ends_the_delivery_failed(lite: Postroom) -> None:
    pr = lite
    with receiver() as hook:
        hook.behaviour.status = 410
        add_endpoint(pr, hook.url)
        emit_cases(pr, 1)
        stats = deliver_until_idle(pr)
    assert stats.failed == 1
    [delivery] = deliveries(pr)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert delivery.last_code == 410
    assert "410 Gone" in (delivery.last_error or "")
    assert len(hook.requests) == 1


def test_a_delivery_past_its_retry_window_ends_failed(database_url: str) -> None:
    # The first attempt fails inside the window; the window is then moved into the past
    # (in the row, rather than raced against the clock), so the retry is the last attempt.
    with open_postroom(database_url) as pr, receiver() as hook:
        hook.behaviour.status = 503
        add_endpoint(pr, hook.url)
        emit_cases(pr, 1)
        with running(dispatcher_for(pr)):
            wait_until(lambda: [d.attempts for d in deliveries(pr)] == [1], what="an attempt")
        assert statuses(pr) == [DeliveryStatus.PENDING]  # inside its window: retried later
        rows = tables.webhook_deliveries
        with pr.engine.begin() as conn:
            conn.execute(update(rows).values(window_start=utcnow() - timedelta(days=2)))
        with running(dispatcher_for(pr)):
            wait_until(lambda: statuses(pr) == [DeliveryStatus.FAILED], what="failed")
        [delivery] = deliveries(pr)
    assert delivery.attempts == len(hook.requests) == 2
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("HTTP 503 Service Unavailable; gave up after 2")
    assert SECRET not in delivery.last_error


def _down_then_back(pr: Postroom, *, attempts_down: int) -> None:
    """Events emitted while the receiver is down all arrive once it is back."""
    hook = Receiver()  # not started: its port refuses connections
    add_endpoint(pr, hook.url, events=list(EventType))
    ids = emit_cases(pr, 5)
    try:
        with running(dispatcher_for(pr)):
            wait_until(
                lambda: all(d.attempts >= attempts_down for d in deliveries(pr)),
                limit=120,
                what=f"{attempts_down} attempts each while the receiver is down",
            )
            assert set(statuses(pr)) <= {DeliveryStatus.PENDING, DeliveryStatus.SENDING}
            errors = {d.last_error for d in deliveries(pr)} - {None}
            assert errors == {"connection to 127.0.0.1 refused"}
            hook.start()
            wait_until(
                lambda: statuses(pr) == [DeliveryStatus.DELIVERED] * 5,
                limit=30,
                what="every event delivered once the receiver is back",
            )
    finally:
        hook.stop()
    assert sorted(set(hook.ids())) == sorted(ids)  # none lost
    assert all(r.verified for r in hook.requests)


def test_events_wait_for_a_receiver_that_is_down_and_all_arrive(pr: Postroom) -> None:
    # Backoff 0.2, 0.4, 0.8, 1 s: four attempts each take about 2.5 s of outage.
    _down_then_back(pr, attempts_down=4)


@pytest.mark.chaos
def test_a_receiver_down_for_30_seconds_loses_nothing(database_url: str) -> None:
    # Waits of 0.2, 0.4, 0.8 and then 1 s: 33 attempts each take over 30 s of outage.
    with open_postroom(database_url) as pr:
        _down_then_back(pr, attempts_down=33)


def test_a_slow_receiver_is_retried_after_the_timeout(tmp_path: Path) -> None:
    with (
        open_postroom(f"sqlite:///{tmp_path / 'p.db'}", webhook_timeout=0.5) as pr,
        receiver() as hook,
    ):
        hook.behaviour.hold_first = True
        add_endpoint(pr, hook.url)
        emit_cases(pr, 1)
        with running(dispatcher_for(pr)):
            wait_until(lambda: statuses(pr) == [DeliveryStatus.DELIVERED], what="delivered")
        hook.release()
        [delivery] = deliveries(pr)
        with pr.engine.connect() as conn:
            first, *_ = pr.delivery_store.attempts(conn, delivery.id)
    assert delivery.attempts >= 2
    assert first.status_code is None
    assert first.error == "no answer within 0.5 s"


def test_a_hanging_receiver_does_not_hold_up_email(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with (
        open_postroom(url, webhook_timeout=60.0) as pr,
        receiver() as hook,
        smtp_server() as smtp,
    ):
        hook.behaviour.hold_first = True
        pr.apply(
            {
                "accounts": [
                    {
                        "name": "Default",
                        "address": "sender@example.com",
                        "host": "127.0.0.1",
                        "port": smtp.port,
                        "security": "none",
                    }
                ]
            }
        )
        add_endpoint(pr, hook.url)
        emit_cases(pr, 1)
        with running(pr.agent(), dispatcher_for(pr)):
            wait_until(lambda: hook.holding == 1, what="the webhook request held open")
            pr.send(to=["alice@example.net"], subject="Hi", body="Body.", class_name="Default")
            wait_until(lambda: len(smtp.sink.received) == 1, what="the email delivered")
            # The email went while the webhook request was still waiting for its answer.
            assert hook.holding == 1
            assert statuses(pr) == [DeliveryStatus.SENDING]
            hook.release()
            wait_until(lambda: statuses(pr) == [DeliveryStatus.DELIVERED], what="delivered")


# --- connections and batches ----------------------------------------------------------


def test_connections_are_kept_alive_across_deliveries(pr: Postroom) -> None:
    with receiver() as hook:
        hook.behaviour.status = 200
        hook.behaviour.answer_bytes = 200  # a short body is read to its end
        add_endpoint(pr, hook.url)
        ids = emit_cases(pr, 24)
        stats = deliver_until_idle(pr)
    assert stats.delivered == 24
    assert sorted(hook.ids()) == sorted(ids)
    # At most one connection per request in flight (4), not one per delivery.
    assert 1 <= hook.connections <= pr.settings.webhook_concurrency
    assert hook.answers_cut == 0


def test_a_long_answer_is_not_downloaded_and_its_connection_is_dropped(lite: Postroom) -> None:
    pr = lite
    with receiver() as hook:
        hook.behaviour.status = 200
        hook.behaviour.answer_bytes = 64 * 1024 * 1024  # more than socket buffers hold
        add_endpoint(pr, hook.url)
        emit_cases(pr, 2)
        stats = deliver_until_idle(pr)
        # The receiver could not hand over the whole body: the client closed instead.
        wait_until(lambda: hook.answers_cut == 2, what="both long answers cut short")
    assert stats.delivered == 2
    assert statuses(pr) == [DeliveryStatus.DELIVERED] * 2
    assert hook.connections == 2


def test_outcomes_written_together_keep_only_the_leases_still_held(pr: Postroom) -> None:
    add_endpoint(pr, "https://hooks.example.com/x")
    emit_cases(pr, 3)
    store = pr.delivery_store
    with pr.engine.begin() as conn:
        mine = store.claim(conn, owner="agent-a", limit=3, lease=30)
    # agent-a's leases lapse; agent-b takes over the oldest of the three.
    later = utcnow() + timedelta(seconds=60)
    with pr.engine.begin() as conn:
        [taken] = store.claim(conn, owner="agent-b", limit=1, lease=30, now=later)
    assert taken.id == mine[0].id

    def delivered(delivery_id: int) -> DeliveryOutcome:
        return DeliveryOutcome(
            id=delivery_id, status=DeliveryStatus.DELIVERED, at=utcnow(), duration_ms=3,
            status_code=204,
        )  # fmt: skip

    retry = DeliveryOutcome(
        id=mine[2].id,
        status=DeliveryStatus.PENDING,
        at=utcnow(),
        duration_ms=5,
        status_code=503,
        error="HTTP 503 Service Unavailable",
        next_attempt_at=utcnow() + timedelta(minutes=5),
    )
    with pr.engine.begin() as conn:
        kept = store.record_many(
            conn, [delivered(mine[0].id), delivered(mine[1].id), retry], owner="agent-a"
        )
    assert kept == {mine[1].id, mine[2].id}
    with pr.engine.connect() as conn:
        first, second, third = (store.get(conn, c.id) for c in mine)
        attempts = [len(store.attempts(conn, c.id)) for c in mine]
    # agent-b's delivery is untouched: still its own to send and record.
    assert first.status is DeliveryStatus.SENDING
    assert first.delivered_at is None
    assert (second.status, second.last_code) == (DeliveryStatus.DELIVERED, 204)
    assert second.delivered_at is not None
    assert (third.status, third.last_error) == (
        DeliveryStatus.PENDING,
        "HTTP 503 Service Unavailable",
    )
    assert third.next_attempt_at is not None
    assert third.next_attempt_at > utcnow()
    assert attempts == [1, 1, 1]  # every attempt that happened is kept
    with pr.engine.begin() as conn:
        assert store.record_many(conn, [delivered(taken.id)], owner="agent-b") == {taken.id}
    with pr.engine.connect() as conn:
        assert store.get(conn, taken.id).status is DeliveryStatus.DELIVERED


def test_a_delivery_whose_lease_would_lapse_is_given_back_unsent(lite: Postroom) -> None:
    pr = lite
    with receiver() as hook:
        add_endpoint(pr, hook.url)
        emit_cases(pr, 3)
        # A lease too short for any request to start under it with the margin asked.
        dispatcher = WebhookDispatcher(
            engine=pr.engine,
            deliveries=pr.delivery_store,
            endpoints=pr.webhook_store,
            owner="agent-a",
            config=DispatchConfig(
                poll_interval=0.05,
                timeout=5.0,
                send_margin=60.0,
                allowed_hosts=frozenset({"127.0.0.1"}),
            ),
        )
        with running(dispatcher):
            wait_until(lambda: dispatcher.stats.given_back >= 6, what="claimed and given back")
        assert hook.requests == []
    assert statuses(pr) == [DeliveryStatus.PENDING] * 3
    assert [d.attempts for d in deliveries(pr)] == [0, 0, 0]


# --- endpoints and URLs ----------------------------------------------------------------


def test_a_deleted_or_disabled_endpoint_ends_its_deliveries(lite: Postroom) -> None:
    pr = lite
    with receiver() as hook:
        add_endpoint(pr, hook.url, name="gone")
        add_endpoint(pr, hook.url, name="off")
        emit_cases(pr, 1)
        with pr.engine.begin() as conn:
            pr.webhook_store.delete(conn, "gone")
        add_endpoint(pr, hook.url, name="off", enabled=False)
        deliver_until_idle(pr)
    errors = {d.endpoint: (d.status, d.last_error) for d in deliveries(pr)}
    assert errors == {
        "gone": (DeliveryStatus.FAILED, "endpoint gone was deleted"),
        "off": (DeliveryStatus.FAILED, "endpoint off is disabled"),
    }
    assert hook.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://100.64.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://127.0.0.1/hook",
        "https://2130706433/hook",  # 127.0.0.1 written as one number
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://localhost/hook",
        "https://printer.local/hook",
        "http://hooks.example.com/hook",
    ],
)
def test_unsafe_urls_are_refused_when_saved(url: str) -> None:
    with pytest.raises(ConfigurationError, match="POSTROOM_ALLOWED_ENDPOINT_HOSTS"):
        check_webhook_url(url, allowed=(), resolve=False)


def test_public_and_allowed_urls_pass() -> None:
    assert check_webhook_url("https://hooks.example.com/x", allowed=(), resolve=False)
    assert check_webhook_url("https://8.8.4.4:8443/x", allowed=(), resolve=False)
    # Documentation ranges are not public addresses either.
    with pytest.raises(ConfigurationError, match=r"203\.0\.113\.9 is"):
        check_webhook_url("https://203.0.113.9/x", allowed=(), resolve=False)
    assert check_webhook_url("http://127.0.0.1:9/x", allowed={"127.0.0.1"}, resolve=False)
    with pytest.raises(ConfigurationError, match="must be an absolute https:// URL"):
        check_webhook_url("ftp://hooks.example.com/", allowed=(), resolve=False)


def test_names_are_checked_by_the_addresses_they_resolve_to() -> None:
    def resolves_to(*addresses: str) -> Any:
        return lambda host, port: list(addresses)

    url = "https://hooks.example.com/x"
    assert check_webhook_url(url, allowed=(), resolve=True, lookup=resolves_to("8.8.8.8"))
    with pytest.raises(ConfigurationError, match=r"resolves to 10\.0\.0\.5, which is a private"):
        check_webhook_url(url, allowed=(), resolve=True, lookup=resolves_to("8.8.8.8", "10.0.0.5"))

    def unknown(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(TransientDeliveryError, match=r"cannot resolve hooks\.example\.com"):
        check_webhook_url(url, allowed=(), resolve=True, lookup=unknown)


def test_unsafe_urls_are_refused_at_send_without_a_request(lite: Postroom) -> None:
    pr = lite
    add_endpoint(pr, "https://169.254.169.254/latest/meta-data/", name="metadata")
    add_endpoint(pr, "https://hooks.example.com/x", name="rebound")
    emit_cases(pr, 1)
    dispatcher = dispatcher_for(pr)
    # The name's address changed after it was saved: it resolves into the network now.
    dispatcher.urls.lookup = lambda host, port: ["192.168.1.20"]
    asyncio.run(dispatcher.run(stop=asyncio.Event(), until_idle=True))
    errors = {d.endpoint: (d.status, d.last_error or "") for d in deliveries(pr)}
    assert errors["metadata"][0] is DeliveryStatus.FAILED
    assert "169.254.169.254 is a cloud metadata address" in errors["metadata"][1]
    assert errors["rebound"][0] is DeliveryStatus.FAILED
    assert "resolves to 192.168.1.20, which is a private address" in errors["rebound"][1]


# --- many agents -------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_dispatchers_never_deliver_one_delivery_twice(postgres_url: str) -> None:
    with open_postroom(postgres_url, webhook_concurrency=8) as pr, receiver() as hook:
        add_endpoint(pr, hook.url)
        ids = emit_cases(pr, 60)
        first: WebhookDispatcher = dispatcher_for(pr, "agent-a")
        second: WebhookDispatcher = dispatcher_for(pr, "agent-b")
        with running(first, second):
            wait_until(
                lambda: statuses(pr) == [DeliveryStatus.DELIVERED] * 60,
                limit=60,
                what="all delivered",
            )
    assert sorted(hook.ids()) == sorted(ids)  # each exactly once
    assert first.stats.delivered + second.stats.delivered == 60


# --- in the service ------------------------------------------------------------------------


def test_the_service_runs_webhooks_as_a_task_on_the_health_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with open_postroom(url) as pr, receiver() as hook:
        add_endpoint(pr, hook.url)
        ids = emit_cases(pr, 2)
        app = create_app(pr, run_agent=False, run_inbound=False)
        with TestClient(app) as web:
            wait_until(lambda: len(hook.answered_ok()) == 2, what="delivered by the service")
            tasks = {t["name"]: t["state"] for t in web.get("/api/v1/healthz").json()["tasks"]}
        assert tasks == {"webhooks": "running"}
        assert sorted(hook.ids()) == sorted(ids)
    with open_postroom(url) as pr:
        app = create_app(pr, run_agent=False, run_inbound=False, run_webhooks=False)
        with TestClient(app) as web:
            assert web.get("/api/v1/healthz").json()["tasks"] == []


def test_agent_run_until_idle_delivers_due_events_unless_told_not_to(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    env = {"POSTROOM_SECRET_KEY": TEST_KEY, "POSTROOM_ALLOWED_ENDPOINT_HOSTS": "127.0.0.1"}
    runner = CliRunner()
    with open_postroom(url) as pr, receiver() as hook:
        add_endpoint(pr, hook.url)
        [first] = emit_cases(pr, 1)
        result = runner.invoke(cli_app, ["-d", url, "agent", "run", "--until-idle"], env=env)
        assert result.exit_code == 0, result.output
        assert "webhooks: delivering" in result.output
        assert hook.ids() == [first]

        emit_cases(pr, 1)
        result = runner.invoke(
            cli_app, ["-d", url, "agent", "run", "--until-idle", "--no-webhooks"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "webhooks: not in this process" in result.output
        assert hook.ids() == [first]
        assert sorted(statuses(pr)) == [DeliveryStatus.DELIVERED, DeliveryStatus.PENDING]
