"""Every Admin Studio page in Chromium at 1,280 px and 390 px: screenshots, no console
errors, axe-core's accessibility rules, and a layout that does not scroll sideways.

Screenshots go to test-artifacts/screenshots/<page>-<width>.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from postroom import Postroom
from postroom.devinbox.server import DevInbox
from postroom.identity import Scope
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.studiokit import (
    ADMIN,
    PASSWORD,
    PHONE,
    WIDE,
    accessibility_problems,
    agent_running,
    browser_fixture,
    hold_live_updates,
    layout_problems,
    log_in_page,
    mortgage_records,
    serving,
    shot,
    skip_without_chromium,
    watch,
)
from tests.test_api_inbound import mail, receive
from tests.test_server import free_port, wait_for

skip_without_chromium()

REFUSED = "refused@example.net"
CASE_TYPE = "MyOrg-Mortgage-Work-MortgageRequest"


def _account(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "address": "mortgages@example.com",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A studio with one of every record and email state; the pages to visit, by name."""
    tmp = tmp_path_factory.mktemp("a11y")
    inbox = tmp / "inbox"
    with (
        DevInbox(inbox, port=free_port()) as dev,
        smtp_server() as bouncer,
        Postroom(make_settings(f"sqlite:///{tmp / 'studio.db'}")) as pr,
    ):
        bouncer.sink.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
        records = mortgage_records()
        records["accounts"] = [
            _account("Default", dev.port),
            _account("MyOrg-Mortgage-Work", dev.port),
            _account("Bounces", bouncer.port),
        ]
        pr.apply(records)
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        pr.identity.create_token(name="case app", scopes={Scope.SEND})
        with agent_running(pr), serving(pr, inbox) as base:
            case = pr.cases.create(
                CASE_TYPE,
                data={"applicant": "Jane Doe", "amount": "250000", "customer_email": "j@x.net"},
                operator="alice",
            )
            failed = pr.send(to=[REFUSED], subject="Will bounce", body="b", class_name="Bounces")
            wait_for(lambda: pr.outbox_entry(failed).status is OutboxStatus.FAILED, limit=30)
            [sent] = pr.outbox(case_id=case.id)
            wait_for(lambda: pr.outbox_entry(sent.id).status is OutboxStatus.SENT, limit=30)
            wait_for(lambda: bool(dev.messages()), limit=10)
            stem = dev.messages()[0].path.stem
            # Received mail: a reply threaded onto the case, and one waiting in triage.
            receive(
                pr, mail(subject="Re: your case", in_reply_to=pr.outbox_entry(sent.id).message_id)
            )
            waiting = receive(pr, mail(subject="A question", html="<p>A <b>question</b></p>"))
            pages = [
                ("dashboard", "/"),
                ("accounts", "/accounts"),
                ("account-new", "/accounts/new"),
                ("account", "/accounts/MyOrg-Mortgage-Work"),
                ("auth-profiles", "/auth-profiles"),
                ("auth-profile-new", "/auth-profiles/new"),
                ("keystores", "/keystores"),
                ("keystore-new", "/keystores/new"),
                ("operators", "/operators"),
                ("operator-edit", "/operators?edit=alice"),
                ("case-types", "/case-types"),
                ("case-type-edit", f"/case-types/edit?class_name={CASE_TYPE}"),
                ("correspondence", "/correspondence"),
                ("correspondence-new", "/correspondence/new"),
                ("correspondence-edit", "/correspondence/edit?name=Mortgage+case+creation"),
                ("cases", "/cases"),
                ("case", f"/cases/{case.id}"),
                ("outbox", "/outbox"),
                ("outbox-search", "/outbox?q=refused&sort=subject&order=asc"),
                ("outbox-entry-sent", f"/outbox/{sent.id}"),
                ("outbox-entry-failed", f"/outbox/{failed}"),
                ("agents", "/agents"),
                ("tokens", "/tokens"),
                ("inbox", "/inbox"),
                ("inbox-message", f"/inbox/{stem}"),
                ("inbound", "/inbound"),
                ("inbound-message", f"/inbound/{waiting}"),
                ("not-found", "/outbox/999999"),
            ]
            yield base, pages


browser = browser_fixture()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_every_page_is_accessible_and_fits(
    site: tuple[str, list[tuple[str, str]]], browser: Browser, viewport: dict[str, int]
) -> None:
    base, pages = site
    width = viewport["width"]
    problems: list[str] = []
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    try:
        page = watch(context.new_page(), problems)
        page.goto(base + "/login")
        problems += accessibility_problems(page) + layout_problems(page)
        shot(page, f"login-{width}")
        log_in_page(page, base)
        for name, path in pages:
            page.goto(base + path)
            page.locator("main h1").first.wait_for()
            if name == "not-found":  # the browser logs the page's own 404 status
                problems[:] = [
                    p for p in problems if not p.endswith(f"404 (Not Found) ({page.url})")
                ]
            hold_live_updates(page)
            problems += accessibility_problems(page)
            problems += layout_problems(page)
            shot(page, f"{name}-{width}")
        # The .eml of the case's email, opened from the case page.
        page.goto(base + dict(pages)["case"])
        page.locator("a", has_text=".eml").first.click()
        page.locator("dl.headers").wait_for()
        problems += accessibility_problems(page) + layout_problems(page)
        shot(page, f"case-eml-{width}")
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_the_accessibility_check_finds_what_it_should(
    site: tuple[str, list[tuple[str, str]]], browser: Browser
) -> None:
    # A check that never fails proves nothing: a nameless button and a low-contrast
    # text added to a real page are reported.
    base, _ = site
    context = browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(base + "/login")
        page.evaluate(
            """() => {
              const main = document.querySelector("main");
              main.appendChild(document.createElement("button"));
              const faint = document.createElement("p");
              faint.textContent = "faint";
              faint.style.color = "#ccc";  // CSSOM, which the page's CSP allows
              main.appendChild(faint);
            }"""
        )
        found = " ".join(accessibility_problems(page))
    finally:
        context.close()
    assert "button-name" in found
    assert "color-contrast" in found


def test_screenshots_are_named_page_and_width() -> None:
    shots = Path(__file__).parent.parent / "test-artifacts" / "screenshots"
    # Runs after the two tests above (file order): both widths of each page are there.
    for width in ("1280", "390"):
        assert (shots / f"dashboard-{width}.png").is_file()
        assert (shots / f"outbox-{width}.png").is_file()
