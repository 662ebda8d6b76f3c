"""Webhooks in Chromium: an admin adds an endpoint (secret write-only), finds a failed
delivery, reads its payload and attempts, and redelivers it. No console errors.

(Refused forms are checked in tests/test_webhook_records.py: a 422 page is a console error.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from postroom import Postroom
from postroom.webhooks.models import DeliveryStatus, EventType
from tests.conftest import make_settings
from tests.studiokit import (
    ADMIN,
    PASSWORD,
    PHONE,
    WIDE,
    accessibility_problems,
    browser_fixture,
    hold_live_updates,
    layout_problems,
    logged_in_page,
    serving,
    shot,
    skip_without_chromium,
)
from tests.test_webhook_records import SECRET, URL, deliveries_for, endpoint, finish

skip_without_chromium()

World = tuple[Postroom, str]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    tmp = tmp_path
    (tmp / "inbox").mkdir()
    # No agent runs: the deliveries stay as the test leaves them.
    with Postroom(make_settings(f"sqlite:///{tmp / 'studio.db'}")) as pr:
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        pr.apply({"webhooks": [endpoint()]})
        with serving(pr, tmp / "inbox") as base:
            yield pr, base


browser = browser_fixture()


@pytest.fixture(params=[WIDE, PHONE], ids=["1280", "390"])
def tab(world: World, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    with logged_in_page(browser, world[1], viewport=request.param) as opened:
        yield opened


def _checked(tab: Page, name: str) -> None:
    hold_live_updates(tab)
    assert accessibility_problems(tab) == []
    assert layout_problems(tab) == []
    width = tab.viewport_size["width"] if tab.viewport_size else 0
    shot(tab, f"{name}-{width}")


def test_add_a_webhook_then_redeliver_a_failed_delivery(world: World, tab: Page) -> None:
    pr, base = world
    width = tab.viewport_size["width"] if tab.viewport_size else 0
    name = f"erp-{width}"

    tab.goto(base + "/webhooks")
    tab.get_by_role("link", name="New webhook").click()
    tab.get_by_label("Name").fill(name)
    tab.get_by_label("URL").fill(URL)
    tab.get_by_label("email.bounced").check()
    tab.get_by_label("case.status_changed").check()
    tab.get_by_label("Signing secret").fill(SECRET)
    tab.get_by_role("button", name="Create webhook").click()
    expect(tab.locator("p.notice")).to_contain_text(f"Webhook {name}: created")
    expect(tab.get_by_text("A secret is set.")).to_be_visible()
    saved = pr.webhook(name)
    assert saved.events == [EventType.EMAIL_BOUNCED, EventType.CASE_STATUS_CHANGED]
    assert saved.secret.get_secret_value() == SECRET
    assert SECRET not in tab.content()
    _checked(tab, "studio-webhook-form")

    [delivery] = deliveries_for(pr, 1)
    assert finish(pr, DeliveryStatus.FAILED, code=503, error="HTTP 503") == delivery
    tab.goto(base + "/webhooks")
    expect(tab.locator(f'tr[data-webhook="{name}"]')).to_contain_text("email.bounced")
    tab.get_by_label("Status").select_option("failed")
    tab.get_by_role("button", name="Show").click()
    row = tab.locator(f'tr[data-delivery="{delivery}"]')
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("HTTP 503")
    _checked(tab, "studio-webhooks")

    row.get_by_role("link", name=f"#{delivery}").click()
    expect(tab.locator("#payload")).to_contain_text('"type": "email.queued"')
    expect(tab.locator("#attempts")).to_contain_text("503")
    _checked(tab, "studio-webhook-delivery")
    tab.get_by_role("button", name="Redeliver").click()
    expect(tab.locator("#delivery-status")).to_have_text("pending")
    expect(tab.get_by_role("button", name="Redeliver")).to_have_count(0)
    assert pr.webhook_delivery(delivery).status is DeliveryStatus.PENDING
