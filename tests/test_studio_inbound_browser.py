"""Triage in Chromium: a reply lands unmatched, the admin attaches it to its case, the
case's conversation shows it; another mail opens a case of its own. No console errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from postroom import Postroom
from postroom.outbox import OutboxStatus
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
from tests.test_api_inbound import HOSTILE_SUBJECT, mail, receive
from tests.test_server import wait_for
from tests.test_studio_inbound import NOTE, NOTE_TYPE

skip_without_chromium()

World = tuple[Postroom, ServerInfo, str]
MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mortgage_studio(tmp_path_factory.mktemp("inbound-studio"), case_types=[NOTE_TYPE]) as w:
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


def test_triage_attach_to_a_case_and_open_another(world: World, tab: Page) -> None:
    pr, _, base = world
    case = pr.cases.create(
        MORTGAGE,
        data={"applicant": "Jane Doe", "amount": "250000", "customer_email": "jane@example.net"},
        operator="alice",
    )
    [sent] = pr.outbox(case_id=case.id)
    wait_for(lambda: pr.outbox_entry(sent.id).status is OutboxStatus.SENT, limit=30)
    # A reply that names nothing Postroom knows (its client dropped the thread headers).
    lost = receive(
        pr,
        mail(
            subject="Re: my mortgage",
            sender="Jane Doe <jane@example.net>",
            text="Here is the payslip you asked for.\n",
            html="<p>Here is the <b>payslip</b> you asked for.</p><script>alert(1)</script>",
        ),
    )
    stranger = receive(
        pr, mail(subject=HOSTILE_SUBJECT, sender='"{{ 7*7 }}" <new@customer.example>')
    )
    assert pr.received_message(lost).status == "unmatched"

    tab.goto(base + "/inbound")
    expect(tab.locator("#inbound-count")).to_contain_text("2 awaiting triage")
    row = tab.locator(f'#inbound tr[data-id="{lost}"]')
    expect(row).to_contain_text("unmatched")
    # The hostile subject is text on the page, not markup.
    expect(tab.locator(f'#inbound tr[data-id="{stranger}"]')).to_contain_text(HOSTILE_SUBJECT)
    _checked(tab, "inbound")

    row.get_by_role("link", name=f"#{lost}").click()
    tab.wait_for_url(re.compile(rf"/inbound/{lost}$"))
    expect(tab.locator("#reply-text")).to_contain_text("payslip")
    tab.locator("#whole-html summary").click()
    frame = tab.frame_locator("iframe.body")
    expect(frame.locator("b")).to_have_text("payslip")
    assert frame.locator("script").count() == 0
    _checked(tab, "inbound-message")

    tab.get_by_label("Attach to case").fill(case.id)
    tab.get_by_role("button", name="Attach").click()
    expect(tab.locator("p.notice")).to_have_text(f"Received #{lost} attached to case {case.id}.")
    expect(tab.locator("#received-status")).to_have_text("matched")
    expect(tab.get_by_role("button", name="Attach")).to_have_count(0)

    tab.locator("#received-case").get_by_role("link", name=case.id).click()
    tab.wait_for_url(re.compile(rf"/cases/{case.id}$"))
    timeline = tab.locator("#conversation")
    expect(timeline.locator("li")).to_have_count(2)
    expect(timeline.locator("li").nth(0)).to_have_attribute("data-kind", "sent")
    expect(timeline.locator("li").nth(1)).to_have_attribute("data-kind", "received")
    expect(timeline.locator("li").nth(1)).to_contain_text("payslip")
    _checked(tab, "case-conversation")
    timeline.get_by_role("link", name=f"Received #{lost}", exact=True).click()
    tab.wait_for_url(re.compile(rf"/inbound/{lost}$"))

    # The other mail opens a case of its own.
    tab.goto(f"{base}/inbound/{stranger}")
    tab.get_by_label("Open a case of type").select_option(NOTE)
    tab.get_by_role("button", name="Show its fields").click()
    tab.wait_for_url(re.compile(rf"/inbound/{stranger}\?case_type="))
    create = tab.locator("#create-case")
    expect(create).to_contain_text("Create")
    create.click()
    tab.wait_for_url(re.compile(r"/cases/N-\d+$"))
    expect(tab.locator("p.notice")).to_contain_text(f"created from received #{stranger}")
    new_case = tab.url.rsplit("/", 1)[1]
    assert pr.received_message(stranger).case_id == new_case
    expect(tab.locator("#conversation li")).to_have_count(1)
    expect(tab.locator("#conversation li")).to_contain_text(HOSTILE_SUBJECT)

    tab.goto(base + "/inbound")
    expect(tab.locator("#inbound-count")).not_to_contain_text("awaiting triage")
    # Mail that arrives while the list is open shows up without a reload.
    late = receive(pr, mail(subject="One more thing"))
    expect(tab.locator(f'#inbound tr[data-id="{late}"]')).to_contain_text(
        "One more thing", timeout=20_000
    )
    expect(tab.locator("#inbound-count")).to_contain_text("1 awaiting triage")
