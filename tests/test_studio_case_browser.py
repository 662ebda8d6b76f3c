"""Creating a case in Chromium from the case type's declared fields, at 1,280 and 390 px.

The case's email reaches ``sent`` on the case page while it stays open (its live parts
refresh themselves); a case whose email cannot be sent is shown as an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from postroom import Postroom
from tests.fakes import ServerInfo
from tests.studiokit import (
    PHONE,
    WIDE,
    accessibility_problems,
    browser_fixture,
    layout_problems,
    logged_in_page,
    mortgage_studio,
    shot,
    skip_without_chromium,
)

skip_without_chromium()

World = tuple[Postroom, ServerInfo, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # A second type, without fields: chosen, the form falls back to free-form data.
    note = {"class": "MyOrg-Notes-Work-Note", "class_group": "MyOrg-Notes-Work",
            "label": "Note", "id_prefix": "N-"}  # fmt: skip
    with mortgage_studio(tmp_path_factory.mktemp("case-studio"), case_types=[note]) as world:
        yield world


browser = browser_fixture()


@pytest.fixture(params=[WIDE, PHONE], ids=["1280", "390"])
def page(
    request: pytest.FixtureRequest, world: World, browser: Browser
) -> Iterator[tuple[Page, str]]:
    viewport: dict[str, int] = request.param
    with logged_in_page(browser, world[2], viewport=viewport) as opened:
        yield opened, str(viewport["width"])


def fill_mortgage(page: Page, *, creator: str, applicant: str) -> None:
    page.get_by_label("Created by").select_option(creator)
    page.get_by_label("Applicant").fill(applicant)
    page.get_by_label("Amount").fill("250000.50")
    page.get_by_label("Currency").select_option("GBP")
    page.get_by_label("Customer email").fill("jane@example.net")


def test_a_case_from_declared_fields_reaches_sent_without_reloading(
    world: World, page: tuple[Page, str]
) -> None:
    pr, srv, base = world
    tab, width = page
    tab.goto(base + "/cases")
    # The form says what it needs, and what creating the case will send.
    expect(tab.get_by_label("Applicant")).to_have_attribute("required", "")
    expect(tab.get_by_label("Amount")).to_have_attribute("step", "0.01")
    expect(tab.get_by_label("Customer email")).to_have_attribute("type", "email")
    expect(tab.get_by_label("Created by")).to_have_attribute("required", "")
    expect(tab.locator("#creation-emails")).to_contain_text(
        "Notify the case manager: to CaseManager (the creator's manager)"
    )
    assert accessibility_problems(tab) == []
    assert layout_problems(tab) == []
    shot(tab, f"case-form-{width}")

    fill_mortgage(tab, creator="alice", applicant=f"Jane Doe {width}")
    tab.get_by_role("button", name="Create case").click()
    expect(tab.locator(".notice")).to_have_class(re.compile(r"\bsuccess\b"))
    expect(tab.locator(".notice")).to_contain_text("created")
    case_id = tab.url.rsplit("/", 1)[-1]
    case = pr.cases.get(case_id)
    assert case.data == {
        "applicant": f"Jane Doe {width}",
        "amount": 250000.5,
        "currency": "GBP",
        "customer_email": "jane@example.net",
    }
    # No reload from here: the case page's live parts refresh on their own.
    navigations: list[str] = []
    tab.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(tab.locator("#case-emails .status").first).to_have_text("sent", timeout=30_000)
    expect(tab.locator("#case-history")).to_contain_text("email-queued")
    assert navigations == []
    assert any(r.rcpt_tos == ["carol.manager@example.com"] for r in srv.sink.received)
    assert accessibility_problems(tab) == []
    assert layout_problems(tab) == []
    shot(tab, f"case-sent-{width}")


def test_a_case_that_cannot_send_is_shown_as_an_error(world: World, page: tuple[Page, str]) -> None:
    _, _, base = world
    tab, width = page
    tab.goto(base + "/cases")
    # Carol reports to nobody: the case has no Case Manager to notify.
    fill_mortgage(tab, creator="carol", applicant="No Manager")
    tab.get_by_role("button", name="Create case").click()
    notice = tab.locator(".notice")
    expect(notice).to_have_class(re.compile(r"\berror\b"))
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("its email could not be sent")
    expect(notice).to_contain_text("CaseManager")
    expect(tab.locator("#case-history li.failed")).to_contain_text("email-failed")
    shot(tab, f"case-failed-{width}")


def test_choosing_a_type_rebuilds_the_form(world: World, page: tuple[Page, str]) -> None:
    pr, _, base = world
    tab, width = page
    tab.goto(base + "/cases")
    expect(tab.get_by_label("Applicant")).to_be_visible()
    with tab.expect_navigation():
        tab.get_by_label("Case type").select_option(label="Note")
    expect(tab).to_have_url(re.compile(r"case_type=MyOrg-Notes-Work-Note"))
    expect(tab.get_by_label("Applicant")).to_have_count(0)
    expect(tab.locator("#creation-emails")).to_contain_text("No email")
    tab.get_by_label("Case data").fill(f"topic = width {width}")
    tab.get_by_role("button", name="Create case").click()
    expect(tab.locator(".notice")).to_have_class(re.compile(r"\bsuccess\b"))
    case = pr.cases.get(tab.url.rsplit("/", 1)[-1])
    assert case.data == {"topic": f"width {width}"}
