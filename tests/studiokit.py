"""Helpers for the Admin Studio tests: a logged-in client, CSRF tokens, the reference records,
and for the browser tests a served studio, a running agent and checks run in the page."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.config.apply import parse_yaml
from postroom.web import create_studio
from tests.conftest import IN_CI, make_settings
from tests.fakes import ServerInfo, smtp_server
from tests.test_server import free_port, wait_for

ADMIN = "admin"
PASSWORD = "correct-horse-battery"
EXAMPLES = Path(__file__).parent.parent / "examples"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parent.parent / "test-artifacts" / "screenshots"
# The two widths every page is laid out for: a laptop and a phone.
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# axe-core's impacts that fail a page; "moderate" and "minor" are reported only.
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def mortgage_records() -> dict[str, Any]:
    """The reference scenario without its accounts (the tests create those)."""
    records: dict[str, Any] = parse_yaml((EXAMPLES / "mortgage.yaml").read_text())
    records.pop("accounts")
    return records


def log_in(client: TestClient, *, username: str = ADMIN, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; returns the session's CSRF token."""
    form = client.get("/login")
    assert form.status_code == 200
    done = client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "username": username, "password": password},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return csrf_of(client.get("/").text)


def studio_client(
    pr: Postroom, *, inbox_dir: Path | None = None, https: bool = False
) -> TestClient:
    """A client of the studio app (not logged in); an admin user exists."""
    if not any(u.username == ADMIN for u in pr.identity.admins()):
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
    base = "https://testserver" if https else "http://testserver"
    return TestClient(create_studio(pr, inbox_dir=inbox_dir), base_url=base)


# --- Serving the studio to a real browser ---------------------------------------------


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
def mortgage_studio(
    tmp: Path, *, case_types: Sequence[dict[str, Any]] = ()
) -> Iterator[tuple[Postroom, ServerInfo, str]]:
    """The reference records (plus ``case_types``) sending to a test SMTP server, an admin,
    a running agent and the studio served: the Postroom, the SMTP server and the base URL."""
    inbox = tmp / "inbox"
    inbox.mkdir()
    with (
        smtp_server() as srv,
        Postroom(make_settings(f"sqlite:///{tmp / 'studio.db'}")) as pr,
    ):
        records = mortgage_records()
        records["accounts"] = [
            {"name": "Default", "address": "noreply@example.com", "host": "127.0.0.1",
             "port": srv.port, "security": "none"},
        ]  # fmt: skip
        records["case_types"].extend(case_types)
        pr.apply(records)
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        with agent_running(pr), serving(pr, inbox) as base:
            yield pr, srv, base


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


# --- The browser and checks run in it ---------------------------------------------------


def launch(p: Playwright) -> Browser:
    """Debian's Chromium, headless."""
    return p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])


def skip_without_chromium() -> None:
    """Skip the calling test module when Chromium is absent (never on CI, where it must be)."""
    if not CHROMIUM.exists() and not IN_CI:
        pytest.skip(
            f"{CHROMIUM} is absent: the browser tests need Debian's chromium package",
            allow_module_level=True,
        )


def browser_fixture() -> Any:
    """A module's ``browser`` fixture: one headless Chromium for the whole module.

    A browser module assigns it (``browser = browser_fixture()``) rather than a conftest
    defining it, so only the modules that drive a browser have one.
    """

    def browser() -> Iterator[Browser]:
        with sync_playwright() as p:
            opened = launch(p)
            try:
                yield opened
            finally:
                opened.close()

    return pytest.fixture(scope="module", name="browser")(browser)


@contextmanager
def logged_in_page(browser: Browser, base: str, *, viewport: dict[str, int]) -> Iterator[Page]:
    """A page in a context of its own, logged in; it must see no console error or exception."""
    problems: list[str] = []
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    opened = watch(context.new_page(), problems)
    log_in_page(opened, base)
    try:
        yield opened
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def watch(page: Page, problems: list[str]) -> Page:
    """Collect the page's console errors and uncaught exceptions into ``problems``."""

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(f"console: {msg.text} ({page.url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc} ({page.url})"))
    page.set_default_timeout(10_000)
    return page


def log_in_page(page: Page, base: str) -> None:
    """Log in through the Studio's login form."""
    page.goto(base + "/login")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login)"))


def shot(page: Page, name: str) -> None:
    """A full-page screenshot in test-artifacts/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _axe_source() -> str:
    # axe-core as shipped inside the axe-playwright-python wheel: no network needed.
    return (files("axe_playwright_python") / "axe.min.js").read_text("utf-8")


_AXE: list[str] = []


def hold_live_updates(page: Page) -> None:
    """Stop the page's background refreshes, as a hidden tab does, and let one in flight end.

    Checks that read the whole page then see one version of it, not a part being replaced.
    """
    if page.locator("[data-live]").count():
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {value: true, configurable: true})"
        )
        page.wait_for_load_state("networkidle")


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each.

    Evaluated through the DevTools protocol, so the page's Content-Security-Policy
    (script-src 'self') stays as it is for the Studio's own scripts.
    """
    if not _AXE:
        _AXE.append(_axe_source())
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_AXE[0])
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}) on {page.url}: {v['help']}: "
        + ", ".join(str(n["target"]) for n in v["nodes"][:5])
        for v in results["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def layout_problems(page: Page) -> list[str]:
    """What breaks a narrow layout: the page scrolling sideways, a `#12` or badge wrapping."""
    found: list[str] = page.evaluate(
        """() => {
          const problems = [];
          const root = document.documentElement;
          if (root.scrollWidth > window.innerWidth + 1) {
            problems.push(`page ${root.scrollWidth}px wide, window ${window.innerWidth}px`);
          }
          document.querySelectorAll(".status, a").forEach((el) => {
            const text = (el.textContent || "").trim();
            const badge = el.classList.contains("status");
            if ((badge || /^#\\d+$/.test(text)) && el.getClientRects().length > 1) {
              problems.push(`"${text}" wraps`);
            }
          });
          document.querySelectorAll("main td").forEach((td) => {
            const text = (td.textContent || "").trim();
            if (text.length > 3 && td.offsetWidth > 0 && td.offsetWidth < 24) {
              problems.push(`a cell "${text.slice(0, 20)}" is ${td.offsetWidth}px wide`);
            }
          });
          return problems;
        }"""
    )
    return [f"{p} ({page.url})" for p in found]
