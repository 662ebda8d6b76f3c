"""Admin Studio in a real browser (Chromium via Playwright) against real servers.

uvicorn serves the studio on 127.0.0.1, a sender agent runs in another thread and an
aiosmtpd server receives the mail. Screenshots of each page go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from postroom import Postroom
from postroom.outbox import OutboxStatus
from postroom.web import create_studio
from tests.conftest import IN_CI, make_settings
from tests.fakes import ServerInfo, smtp_server
from tests.studiokit import ADMIN, PASSWORD, mortgage_records
from tests.test_server import free_port, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parent.parent / "test-artifacts" / "screenshots"
REFUSED = "refused@example.net"

if not CHROMIUM.exists() and not IN_CI:
    pytest.skip(
        f"{CHROMIUM} is absent: the browser tests need Debian's chromium package",
        allow_module_level=True,
    )


@contextmanager
def serving(pr: Postroom, inbox_dir: Path) -> Iterator[str]:
    """The studio under uvicorn in a thread, on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_studio(pr, inbox_dir=inbox_dir),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), limit=10)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop in time"


@contextmanager
def agent_running(pr: Postroom) -> Iterator[None]:
    """A sender agent in its own thread and event loop, stopped when the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(pr.agent().run(stop=stop))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=20)
        assert not thread.is_alive(), "the agent did not stop in time"
        loop.close()
        assert errors == []


def reload_until(page: Page, done: Callable[[], bool], *, limit: float = 20.0) -> None:
    """Reload ``page`` until ``done()`` (bounded by ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting on {page.url}"
        time.sleep(0.3)
        page.reload()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Postroom, ServerInfo, str]]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with (
        smtp_server() as srv,
        Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr,
    ):
        srv.sink.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
        pr.apply(mortgage_records())
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        with agent_running(pr), serving(pr, inbox) as base:
            yield pr, srv, base


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_studio_end_to_end_in_chromium(world: tuple[Postroom, ServerInfo, str]) -> None:
    pr, srv, base = world
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    problems.append(f"console: {msg.text} ({page.url})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc} ({page.url})"))

            # Log in: an unauthenticated page request lands on the login form.
            page.goto(base + "/outbox")
            expect(page).to_have_url(re.compile(r"/login\?next="))
            shot(page, "01-login")
            page.get_by_label("User name").fill(ADMIN)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(base + "/outbox")
            page.goto(base + "/")
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            shot(page, "02-dashboard")

            # An email account from a provider preset, pointed at the test SMTP server.
            page.goto(base + "/accounts/new")
            page.get_by_label("Provider").select_option("office365")
            expect(page.get_by_label("SMTP host")).to_have_value("smtp.office365.com")
            expect(page.get_by_label("Port")).to_have_value("587")
            expect(page.get_by_label("Security", exact=True)).to_have_value("starttls")
            page.get_by_label("Name", exact=True).fill("MyOrg-Mortgage-Work")
            page.get_by_label("From address").fill("mortgages@example.com")
            page.get_by_label("Display name").fill("MyOrg Mortgages")
            page.get_by_label("SMTP host").fill("127.0.0.1")
            page.get_by_label("Port").fill(str(srv.port))
            page.get_by_label("Security", exact=True).select_option("none")
            shot(page, "03-account-new")
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".notice")).to_contain_text("MyOrg-Mortgage-Work: created")
            page.get_by_role("button", name="Test connectivity").click()
            expect(page.locator("#test-result")).to_have_text("All steps passed.")
            expect(page.locator("ol.steps li").first).to_be_visible()
            shot(page, "04-account-test")
            assert pr.account("MyOrg-Mortgage-Work").port == srv.port

            page.goto(base + "/accounts")
            expect(page.get_by_role("cell", name="MyOrg-Mortgage-Work").first).to_be_visible()
            shot(page, "05-accounts")

            # A Mortgage case: its email goes from queued to sent.
            page.goto(base + "/cases")
            page.get_by_label("Case type").select_option(label="Mortgage Request")
            page.get_by_label("Created by").select_option("alice")
            page.get_by_label("Case data").fill(
                "applicant = Jane Doe\namount = 250000\ncustomer_email = jane@example.net"
            )
            page.get_by_role("button", name="Create case").click()
            expect(page.locator(".notice")).to_contain_text("created")
            case_id = page.url.rsplit("/", 1)[-1]
            shot(page, "06-case-created")

            page.goto(f"{base}/outbox?case={case_id}")
            row = page.locator("#outbox tbody tr").first
            reload_until(page, lambda: "sent" in (row.locator(".status").text_content() or ""))
            expect(row).to_contain_text("Mortgage request")
            shot(page, "07-outbox-sent")
            assert any(r.rcpt_tos == ["carol.manager@example.com"] for r in srv.sink.received)

            # The case shows the sent .eml; it opens readably and downloads.
            page.goto(f"{base}/cases/{case_id}")
            link = page.locator(
                "#attachments td:first-child > a", has_text=re.compile(r"email-\d+\.eml")
            )
            expect(link).to_be_visible()
            shot(page, "08-case")
            link.click()
            expect(page.locator("dl.headers")).to_contain_text("Mortgage request")
            expect(page.frame_locator("iframe.body").locator("body")).to_contain_text(
                "Dear Carol Case-Manager"
            )
            shot(page, "09-case-eml")
            with page.expect_download() as download:
                page.get_by_role("link", name="Download .eml").click()
            assert download.value.suggested_filename.endswith(".eml")

            # A failed email, retried after the cause is fixed.
            failed_id = pr.send(
                to=[REFUSED],
                subject="Will bounce",
                body="<p>b</p>",
                class_name="MyOrg-Mortgage-Work",
            )
            wait_for(lambda: pr.outbox_entry(failed_id).status is OutboxStatus.FAILED)
            page.goto(base + "/outbox?status=failed")
            shot(page, "10-outbox-failed")
            page.get_by_role("link", name=f"#{failed_id}").click()
            expect(page.locator("#last-error")).to_contain_text("550")
            shot(page, "11-outbox-entry-failed")
            del srv.sink.rcpt_replies[REFUSED]
            page.get_by_role("button", name="Retry").click()
            expect(page.locator(".notice")).to_contain_text(f"Email #{failed_id} is queued")
            status = page.locator("#entry-status")
            reload_until(page, lambda: "sent" in (status.text_content() or ""))
            shot(page, "12-outbox-entry-retried")

            # The other pages render without errors.
            page.goto(base + "/correspondence/edit?name=Mortgage+case+creation")
            page.get_by_label("Preview against case").select_option(case_id)
            preview = page.frame_locator("#preview")
            expect(preview.locator("#subject")).to_contain_text(case_id)
            page.get_by_label("HTML body (Jinja2)").fill("<p>Hello {{ case.data.applicant }}</p>")
            expect(preview.locator("#body")).to_have_text("Hello Jane Doe")
            shot(page, "13-correspondence-editor")
            page.goto(base + "/agents")
            expect(page.locator("#agents")).to_contain_text("running")
            page.locator("#agents").get_by_role("button", name=re.compile("^Pause")).click()
            expect(page.locator("#agents")).to_contain_text("paused")
            page.locator("#agents").get_by_role("button", name=re.compile("^Resume")).click()
            expect(page.locator(".notice")).to_contain_text("resumed")
            shot(page, "14-agents")
            page.goto(base + "/tokens")
            page.get_by_label("Name (who or what uses it)").fill("case app")
            page.get_by_role("button", name="Create token").click()
            expect(page.locator("#token-value")).to_have_value(re.compile(r"^prt_"))
            shot(page, "22-api-token-created")
            for path, name in (
                ("/", "15-dashboard-after"),
                ("/auth-profiles", "16-auth-profiles"),
                ("/keystores", "17-keystores"),
                ("/operators", "18-operators"),
                ("/case-types", "19-case-types"),
                ("/correspondence", "20-correspondence"),
                ("/inbox", "21-dev-inbox"),
            ):
                page.goto(base + path)
                expect(page.locator("main h1")).to_be_visible()
                shot(page, name)
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/login$"))
        finally:
            browser.close()
    assert problems == []
