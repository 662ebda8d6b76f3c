"""410 Gone: the receiver asks for no more events, and its endpoint is disabled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postroom import Postroom
from postroom.webhooks import DeliveryStatus
from tests.test_webhook_delivery import (
    add_endpoint,
    deliver_until_idle,
    deliveries,
    emit_cases,
    open_postroom,
)
from tests.webhookkit import receiver


@pytest.fixture
def pr(database_url: str) -> Iterator[Postroom]:
    with open_postroom(database_url) as postroom:
        yield postroom


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent(pr: Postroom) -> None:
    with receiver() as gone, receiver() as other:
        gone.behaviour.status = 410
        add_endpoint(pr, gone.url, name="gone")
        add_endpoint(pr, other.url, name="other")
        emit_cases(pr, 1)
        deliver_until_idle(pr)
        assert len(gone.requests) == 1
        assert not pr.webhook("gone").enabled
        assert pr.webhook("other").enabled  # another endpoint is not its business

        emit_cases(pr, 1)  # a later event: not for a disabled endpoint
        deliver_until_idle(pr)
        assert len(gone.requests) == 1
        assert len(other.requests) == 2
    by_endpoint = sorted((d.endpoint, d.status, d.last_code) for d in deliveries(pr))
    assert by_endpoint == [
        ("gone", DeliveryStatus.FAILED, 410),
        ("other", DeliveryStatus.DELIVERED, 204),
        ("other", DeliveryStatus.DELIVERED, 204),
    ]
