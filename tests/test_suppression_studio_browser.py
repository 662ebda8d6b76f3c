"""The suppression list in Chromium: suppress an address by hand, see the next email skip it
on the email's page, search, export, and remove it after confirming. No console errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from postroom import Postroom
from postroom.outbox import OutboxStatus
from postroom.suppression import SuppressionReason
from tests.fakes import ServerInfo
from tests.studiokit import (
    WIDE,
    accessibility_problems,
    browser_fixture,
    hold_live_updates,
    layout_problems,
    logged_in_page,
    mortgage_studio,
    shot,
    skip_without_chromium,
)
from tests.test_server import wait_for

skip_without_chromium()

World = tuple[Postroom, ServerInfo, str]
JANE = "jane@example.net"
BOB = "bob@example.net"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mortgage_studio(tmp_path_factory.mktemp("suppression-studio")) as w:
        yield w


browser = browser_fixture()


@pytest.fixture
def tab(world: World, browser: Browser) -> Iterator[Page]:
    with logged_in_page(browser, world[2], viewport=WIDE) as opened:
        yield opened


def _checked(tab: Page, name: str) -> None:
    hold_live_updates(tab)
    assert accessibility_problems(tab) == []
    assert layout_problems(tab) == []
    shot(tab, f"{name}-1280")


def test_suppress_skip_search_export_and_remove(world: World, tab: Page) -> None:
    pr, srv, base = world
    with pr.engine.begin() as conn:
        pr.suppression_store.suppress(
            conn,
            "gone@example.org",
            scope="Default",
            reason=SuppressionReason.HARD_BOUNCE,
            detail="550 5.1.1 no such user",
        )

    tab.goto(base + "/suppressions")
    tab.get_by_label("Address", exact=True).fill("Jane@Example.net")
    tab.locator("#f-account").select_option("*")
    tab.get_by_label("Why (a note)").fill("asked by phone")
    tab.get_by_role("button", name="Suppress").click()
    expect(tab.get_by_role("status")).to_contain_text(f"{JANE} suppressed for (every account).")
    rows = tab.locator("#suppressions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("asked by phone")
    expect(rows.first).to_contain_text("admin")
    _checked(tab, "suppressions")

    # The next email to Jane and Bob goes to Bob only; its page says why not to Jane.
    oid = pr.send(to=[JANE, BOB], subject="Your documents", body="<p>Hi</p>")
    wait_for(lambda: pr.outbox_entry(oid).status is OutboxStatus.SENT, limit=30)
    assert [r.rcpt_tos for r in srv.sink.received if r.message["Subject"] == "Your documents"] == [
        [BOB]
    ]
    tab.goto(f"{base}/outbox/{oid}")
    jane = tab.locator(f'tr[data-address="{JANE}"]')
    expect(jane.locator(".status")).to_have_text("suppressed")
    expect(jane).to_contain_text("manual (asked by phone)")
    expect(tab.locator(f'tr[data-address="{BOB}"] .status')).to_have_text("accepted")
    _checked(tab, "outbox-entry-suppressed")
    jane.get_by_role("link", name="See the suppression list").click()
    expect(tab.locator("#suppressions tbody tr")).to_have_count(1)

    tab.goto(base + "/suppressions")
    tab.get_by_label("Search", exact=True).fill("gone")
    tab.get_by_role("button", name="Search").click()
    expect(tab.locator("#suppressions tbody tr")).to_have_count(1)
    with tab.expect_download() as download:
        tab.get_by_role("link", name="Export CSV").click()
    exported = download.value.path().read_text(encoding="utf-8")
    assert exported.splitlines()[0].startswith("address,account,reason,detail")
    assert "gone@example.org,Default,hard_bounce,550 5.1.1 no such user" in exported
    assert JANE not in exported  # the export follows the search

    tab.get_by_role("button", name="Remove gone@example.org (Default)").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Stop suppressing gone@example.org?")
    tab.get_by_role("button", name="Stop suppressing gone@example.org for account Default").click()
    expect(tab.get_by_role("status")).to_contain_text("gone@example.org is no longer suppressed")
    assert [s.address for s in pr.suppressions()] == [JANE]
