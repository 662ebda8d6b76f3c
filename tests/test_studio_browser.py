"""Admin Studio in a real browser (Chromium via Playwright) against real servers.

uvicorn serves the studio on 127.0.0.1, a sender agent runs in another thread and an
aiosmtpd server receives the mail. One browser and one server serve the whole module.
Screenshots go to test-artifacts/screenshots/.

The serving helpers live in tests/studiokit.py and are re-exported here for the other
browser test modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from postroom import Postroom
from postroom.db.types import utcnow
from postroom.identity import Scope
from postroom.outbox import OutboxStatus
from tests.fakes import ServerInfo
from tests.studiokit import (
    ADMIN,
    CHROMIUM,
    PASSWORD,
    PHONE,
    SHOTS,
    WIDE,
    agent_running,
    browser_fixture,
    log_in_page,
    mortgage_studio,
    reload_until,
    serving,
    shot,
    skip_without_chromium,
    watch,
)
from tests.test_server import wait_for

__all__ = [
    "ADMIN",
    "CHROMIUM",
    "PASSWORD",
    "SHOTS",
    "agent_running",
    "reload_until",
    "serving",
    "shot",
]

REFUSED = "refused@example.net"
CASE_TYPE = "MyOrg-Mortgage-Work-MortgageRequest"

skip_without_chromium()

World = tuple[Postroom, ServerInfo, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mortgage_studio(tmp_path_factory.mktemp("studio")) as (pr, srv, base):
        srv.sink.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
        yield pr, srv, base


browser = browser_fixture()


@pytest.fixture
def problems() -> Iterator[list[str]]:
    """Console errors and uncaught exceptions seen by the test's pages: none is allowed."""
    seen: list[str] = []
    yield seen
    assert not seen, "\n".join(seen)


def open_page(
    browser: Browser, base: str, problems: list[str], *, viewport: dict[str, int]
) -> Page:
    page = watch(browser.new_context(viewport=viewport).new_page(), problems)  # type: ignore[arg-type]
    log_in_page(page, base)
    return page


def test_studio_end_to_end_in_chromium(world: World, browser: Browser, problems: list[str]) -> None:
    pr, srv, base = world
    context = browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
    page = watch(context.new_page(), problems)
    try:
        # Log in: an unauthenticated page request lands on the login form.
        page.goto(base + "/outbox")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.get_by_label("User name").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(base + "/outbox")

        # An email account from a provider preset, pointed at the test SMTP server.
        page.goto(base + "/accounts/new")
        page.get_by_label("Provider").select_option("office365")
        expect(page.get_by_label("SMTP host")).to_have_value("smtp.office365.com")
        expect(page.get_by_label("Port", exact=True)).to_have_value("587")
        expect(page.get_by_label("Security", exact=True)).to_have_value("starttls")
        page.get_by_label("Name", exact=True).fill("MyOrg-Mortgage-Work")
        page.get_by_label("From address").fill("mortgages@example.com")
        page.get_by_label("Display name").fill("MyOrg Mortgages")
        page.get_by_label("SMTP host").fill("127.0.0.1")
        page.get_by_label("Port", exact=True).fill(str(srv.port))
        page.get_by_label("Security", exact=True).select_option("none")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator(".notice")).to_contain_text("MyOrg-Mortgage-Work: created")
        page.get_by_role("button", name="Test connectivity").click()
        expect(page.locator("#test-result")).to_have_text("All steps passed.")
        shot(page, "flow-account-tested-1280")
        assert pr.account("MyOrg-Mortgage-Work").port == srv.port

        # A Mortgage case (its create form has tests of its own): the email reaches sent.
        case = pr.cases.create(
            CASE_TYPE,
            data={"applicant": "Jane Doe", "amount": "250000", "customer_email": "j@x.net"},
            operator="alice",
        )
        page.goto(f"{base}/outbox?case={case.id}")
        row = page.locator("#outbox tbody tr").first
        expect(row.locator(".status")).to_have_text("sent", timeout=30_000)  # live, no reload
        expect(row).to_contain_text("Mortgage request")
        assert any(r.rcpt_tos == ["carol.manager@example.com"] for r in srv.sink.received)

        # The case shows the sent .eml; it opens readably and downloads.
        page.goto(f"{base}/cases/{case.id}")
        link = page.locator("a", has_text=re.compile(r"email-\d+\.eml")).first
        expect(link).to_be_visible()
        link.click()
        expect(page.locator("dl.headers")).to_contain_text("Mortgage request")
        expect(page.frame_locator("iframe.body").locator("body")).to_contain_text(
            "Dear Carol Case-Manager"
        )
        with page.expect_download() as download:
            page.get_by_role("link", name="Download .eml").click()
        assert download.value.suggested_filename.endswith(".eml")

        # A failed email, retried after the cause is fixed; the page follows without reload.
        failed_id = pr.send(to=[REFUSED], subject="Will bounce", body="<p>b</p>")
        wait_for(lambda: pr.outbox_entry(failed_id).status is OutboxStatus.FAILED, limit=30)
        page.goto(base + "/outbox?status=failed")
        page.get_by_role("link", name=f"#{failed_id}").click()
        expect(page.locator("#last-error")).to_contain_text("550")
        del srv.sink.rcpt_replies[REFUSED]
        page.get_by_role("button", name="Retry").click()
        expect(page.locator(".notice.success")).to_contain_text(f"Email #{failed_id} is queued")
        expect(page.locator("#entry-status")).to_contain_text("sent", timeout=30_000)
        shot(page, "flow-entry-retried-1280")

        # Retrying a sent email is refused, and shown as an error, not a success.
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        answer = page.request.post(
            f"{base}/outbox/{failed_id}/retry", form={"csrf_token": token or ""}, max_redirects=0
        )
        assert answer.status == 303
        page.goto(f"{base}/outbox/{failed_id}")
        # The notice cookie was set by the request above, shared by the context.
        expect(page.locator(".notice.error")).to_contain_text("Not done")

        # The correspondence editor previews against the case.
        page.goto(base + "/correspondence/edit?name=Mortgage+case+creation")
        page.get_by_label("Preview against case").select_option(case.id)
        preview = page.frame_locator("#preview")
        expect(preview.locator("#subject")).to_contain_text(case.id)
        page.get_by_label("HTML body (Jinja2)").fill("<p>Hello {{ case.data.applicant }}</p>")
        expect(preview.locator("#body")).to_have_text("Hello Jane Doe")

        # Agents: pause and resume.
        page.goto(base + "/agents")
        expect(page.locator("#agents")).to_contain_text("running")
        page.locator("#agents").get_by_role("button", name=re.compile("^Pause")).click()
        expect(page.locator("#agents")).to_contain_text("paused")
        page.locator("#agents").get_by_role("button", name=re.compile("^Resume")).click()
        expect(page.locator(".notice")).to_contain_text("resumed")

        # An API token, shown once.
        page.goto(base + "/tokens")
        page.get_by_label("Name (who or what uses it)").fill("case app")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#token-value")).to_have_value(re.compile(r"^prt_"))
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/login$"))
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_outbox_search_by_recipient_and_sort(
    world: World, browser: Browser, problems: list[str], viewport: dict[str, int]
) -> None:
    pr, _, base = world
    width = viewport["width"]
    ids = {
        who: pr.send(to=[f"{who}.{width}@example.org"], subject=f"Search {who} {width}", body="b")
        for who in ("zoe", "bob", "amy")
    }
    page = open_page(browser, base, problems, viewport=viewport)
    try:
        page.goto(base + "/outbox")
        page.get_by_label("Search").fill(f"BOB.{width}@example")  # any case
        page.get_by_role("button", name="Search").click()
        expect(page).to_have_url(re.compile(r"[?&]q=BOB"))
        rows = page.locator("#outbox tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(f"bob.{width}@example.org")
        expect(page.locator("#outbox-count")).to_have_text("1 email.")
        shot(page, f"outbox-search-{width}")

        # By subject, ascending, from the column header; the search is kept.
        page.get_by_label("Search").fill("Search ")
        page.get_by_role("button", name="Search").click()
        page.locator("#outbox thead").get_by_role("link", name="Subject").click()
        header = page.locator("#outbox thead th", has_text="Subject")
        expect(header).to_have_attribute("aria-sort", "descending")
        page.locator("#outbox thead").get_by_role("link", name="Subject").click()
        expect(header).to_have_attribute("aria-sort", "ascending")
        expect(page).to_have_url(re.compile(r"q=Search"))
        mine = page.locator("#outbox tbody tr", has_text=f" {width}")
        expect(mine).to_have_count(3)
        assert [t.split()[1] for t in mine.locator("td:nth-child(3)").all_text_contents()] == [
            "amy",
            "bob",
            "zoe",
        ]
        assert {int(i) for i in mine.evaluate_all("rs => rs.map(r => r.dataset.id)")} == set(
            ids.values()
        )
    finally:
        page.context.close()


def test_outbox_dashboard_and_entry_update_without_reload(
    world: World, browser: Browser, problems: list[str]
) -> None:
    pr, _, base = world
    outbox = open_page(browser, base, problems, viewport=WIDE)
    dashboard = outbox.context.new_page()
    watch(dashboard, problems)
    try:
        outbox.goto(base + "/outbox?q=watched")
        dashboard.goto(base + "/")
        for page in (outbox, dashboard):
            page.evaluate("window.notReloaded = true")
        # Queued while the pages are open; the agent sends it a few seconds later.
        outbox_id = pr.send(
            to=["watcher@example.org"],
            subject="A watched email",
            body="b",
            send_after=utcnow() + timedelta(seconds=3),
        )
        row = outbox.locator(f"#outbox tbody tr[data-id='{outbox_id}']")
        expect(row.locator(".status")).to_have_text(re.compile("queued|retry"), timeout=10_000)
        entry = outbox.context.new_page()
        watch(entry, problems)
        entry.goto(f"{base}/outbox/{outbox_id}")
        expect(row.locator(".status")).to_have_text("sent", timeout=30_000)
        expect(entry.locator("#entry-status")).to_contain_text("sent", timeout=10_000)
        recent = dashboard.locator(f"#recent tr[data-id='{outbox_id}'] .status")
        expect(recent).to_have_text("sent", timeout=10_000)
        expect(outbox.locator("#live-status")).to_contain_text("sent")
        for page in (outbox, dashboard):
            assert page.evaluate("window.notReloaded") is True
        shot(dashboard, "flow-dashboard-live-1280")
    finally:
        outbox.context.close()


def test_tokens_filter_and_sort_in_the_page(
    world: World, browser: Browser, problems: list[str]
) -> None:
    pr, _, base = world
    for name in ("charlie", "alpha", "bravo"):
        pr.identity.create_token(name=f"sort-{name}", scopes={Scope.SEND})
    page = open_page(browser, base, problems, viewport=PHONE)
    try:
        page.goto(base + "/tokens")
        page.get_by_label("Filter tokens").fill("sort-")
        rows = page.locator("#tokens tbody tr:visible")
        expect(rows).to_have_count(3)
        page.get_by_label("Filter tokens").fill("BRAVO")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("sort-bravo")
        page.get_by_label("Filter tokens").fill("sort-")
        header = page.locator("#tokens thead th", has_text="Name")
        header.get_by_role("button").click()
        expect(header).to_have_attribute("aria-sort", "ascending")
        assert rows.locator("td:nth-child(2)").all_text_contents() == [
            "sort-alpha",
            "sort-bravo",
            "sort-charlie",
        ]
        header.get_by_role("button").click()
        expect(header).to_have_attribute("aria-sort", "descending")
        assert rows.locator("td:nth-child(2)").first.text_content() == "sort-charlie"
        shot(page, "tokens-sorted-390")
    finally:
        page.context.close()


def test_screenshots_directory(world: World) -> None:
    assert Path(SHOTS).is_dir()


def test_live_updates_stop_after_failures_and_say_so(world: World, browser: Browser) -> None:
    _, _, base = world
    seen: list[str] = []
    page = open_page(browser, base, seen, viewport=WIDE)
    refused: list[str] = []

    def refuse(route: Route) -> None:
        if route.request.headers.get("x-postroom-live") == "1":
            refused.append(route.request.url)
            route.fulfill(status=503, body="down for maintenance")
        else:
            route.continue_()

    try:
        page.clock.install()
        page.route(base + "/agents", refuse)
        page.goto(base + "/agents")
        status = page.locator("#live-status")
        for _ in range(8):  # the waits back off: 4 s, 8 s, 16 s, 32 s
            if "paused" in (status.text_content() or ""):
                break
            page.clock.run_for(40_000)
            expect(page.locator("#agents")).to_be_visible()
        expect(status).to_contain_text("Live updates paused")
        expect(status).to_contain_text("reload the page")
        count = len(refused)
        page.clock.run_for(120_000)  # stopped: no more requests
        expect(page.locator("#agents")).to_be_visible()
        assert len(refused) == count == 5
        # The browser logs each refused request; nothing else went wrong.
        assert [p for p in seen if "503 (Service Unavailable)" not in p] == []
    finally:
        page.context.close()


def test_a_refresh_keeps_focus_sort_and_filter(
    world: World, browser: Browser, problems: list[str]
) -> None:
    _, _, base = world
    page = open_page(browser, base, problems, viewport=WIDE)
    try:
        page.goto(base + "/agents")
        page.locator("#agents thead th", has_text="Agent").get_by_role("button").click()
        page.locator("#agents").get_by_role("button", name=re.compile("^Pause")).focus()
        # The heartbeat's "s ago" changes every second, so the table is replaced soon.
        page.evaluate("document.querySelector('#agents tbody').dataset.old = 'yes'")
        expect(page.locator("#agents tbody[data-old]")).to_have_count(0, timeout=15_000)
        assert page.evaluate("document.activeElement.textContent").startswith("Pause")
        header = page.locator("#agents thead th", has_text="Agent")
        expect(header).to_have_attribute("aria-sort", "ascending")
        # A filter that hides every row still hides them in the refreshed table.
        page.get_by_label("Filter agents").fill("no such agent")
        expect(page.locator("#agents tbody tr:visible")).to_have_count(0)
        page.evaluate("document.querySelector('#agents tbody').dataset.old = 'yes'")
        expect(page.locator("#agents tbody[data-old]")).to_have_count(0, timeout=15_000)
        expect(page.locator("#agents tbody tr:visible")).to_have_count(0)
    finally:
        page.context.close()
