"""The agent survives a transport that misbehaves, and keeps its leases fresh."""

from __future__ import annotations

import asyncio

from postroom import Postroom
from postroom.outbox import DeliveryReport, OutboxStatus
from postroom.transports import Envelope, Sender
from tests.conftest import make_settings


class ExplodingTransport:
    """A transport with a bug: every send raises something that is not a DeliveryError."""

    def __init__(self, sender: Sender) -> None:
        self.account = sender.account

    async def send(self, envelope: Envelope) -> DeliveryReport:
        raise RuntimeError(f"bug while sending to {envelope.recipients[0]}")

    async def close(self) -> None:
        return None


def test_a_transport_bug_does_not_strand_rows(database_url: str) -> None:
    pr = Postroom(
        make_settings(database_url, backoff_base=60, backoff_max=60),
        transport_factory=ExplodingTransport,
    )
    try:
        pr.apply(
            {
                "accounts": [
                    {
                        "name": "Default",
                        "address": "a@example.com",
                        "host": "127.0.0.1",
                        "port": 2525,
                        "security": "none",
                    }
                ]
            }
        )
        ids = [pr.send(to=[f"r{n}@example.com"], subject="s", body="b") for n in range(3)]
        stats = asyncio.run(pr.agent().run(until_idle=True))
        assert stats.retried == 3
        for outbox_id in ids:
            entry = pr.outbox_entry(outbox_id)
            assert entry.status is OutboxStatus.RETRY
            assert entry.lease_owner is None
            assert "unexpected RuntimeError in the transport" in (entry.last_error or "")
    finally:
        pr.close()


def test_leases_are_renewed_well_inside_their_length(database_url: str) -> None:
    pr = Postroom(make_settings(database_url, lease_seconds=3, heartbeat_interval=30))
    try:
        assert pr.agent().beat_interval == 1.0
    finally:
        pr.close()
