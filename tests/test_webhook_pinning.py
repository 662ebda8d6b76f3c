"""Webhook connections go to the address that was checked, not to a second DNS answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.webhooks import DeliveryStatus
from postroom.webhooks.dispatcher import dispatcher_for
from postroom.webhooks.urls import check_webhook_url
from tests.test_webhook_delivery import add_endpoint, deliveries, emit_cases, open_postroom
from tests.webhookkit import receiver


class Answers:
    """A resolver the test controls: one answer per lookup, the last one repeated."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return [self.answers[min(len(self.asked), len(self.answers)) - 1]]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.1 that never accepts: a connection would wait in its backlog."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_a_name_answering_loopback_at_connect_reaches_nothing(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    url = f"https://rebind.example:{port}/hook"
    dns = Answers("8.8.8.8", "127.0.0.1")  # public for the check, loopback afterwards
    check_webhook_url(url, allowed=(), resolve=True, lookup=dns)
    with open_postroom(f"sqlite:///{tmp_path / 'p.db'}") as pr:
        add_endpoint(pr, url)
        emit_cases(pr, 2)
        dispatcher = dispatcher_for(pr)
        dispatcher.urls.lookup = dns
        asyncio.run(dispatcher.run(stop=asyncio.Event(), until_idle=True))
        found = deliveries(pr)
    assert [d.status for d in found] == [DeliveryStatus.FAILED] * 2
    assert all(
        "rebind.example resolves to 127.0.0.1, which is a loopback address" in (d.last_error or "")
        for d in found
    )
    assert not connected(listener)
    # Each connection resolved the name itself: the check's answer was not reused.
    assert len(dns.asked) >= 2
    assert all(host == "rebind.example" for host, _ in dns.asked)


def test_connections_go_to_the_address_resolved_for_them_and_are_kept(tmp_path: Path) -> None:
    # An allowed name the system cannot resolve (.test): only the resolver's answer leads
    # to the receiver, so a delivery shows the connection went to that address.
    dns = Answers("127.0.0.1")
    with (
        open_postroom(
            f"sqlite:///{tmp_path / 'p.db'}",
            allowed_endpoint_hosts="hooks.test",
            webhook_concurrency=1,
        ) as pr,
        receiver() as hook,
    ):
        add_endpoint(pr, f"http://hooks.test:{hook.port}/hooks/postroom")
        ids = emit_cases(pr, 5)
        dispatcher = dispatcher_for(pr)
        dispatcher.urls.lookup = dns
        asyncio.run(dispatcher.run(stop=asyncio.Event(), until_idle=True))
        assert [d.status for d in deliveries(pr)] == [DeliveryStatus.DELIVERED] * 5
        assert sorted(hook.ids()) == sorted(ids)
        # The Host header still names the host; only the TCP connect went to the address.
        assert {r.headers["host"] for r in hook.requests} == {f"hooks.test:{hook.port}"}
        # One kept-alive connection for all five, so one lookup, not one per delivery.
        assert hook.connections == len(dns.asked) == 1
