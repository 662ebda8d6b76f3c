"""Deleting records in the Studio, in Chromium at 1,280 and 390 px: confirm, delete, refusals.

One record of each type is deleted through its list page's button and the confirmation
page; a record still in use is refused with the API's message, shown as an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from postroom import Postroom, catalog
from postroom.errors import NotFoundError
from tests.conftest import make_settings
from tests.studiokit import (
    ADMIN,
    PASSWORD,
    PHONE,
    WIDE,
    browser_fixture,
    logged_in_page,
    mortgage_records,
    serving,
    shot,
    skip_without_chromium,
)
from tests.test_record_kinds import apply_records, signing_keystore

skip_without_chromium()

World = tuple[Postroom, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("studio-delete")
    with Postroom(make_settings(f"sqlite:///{tmp / 'studio.db'}")) as pr:
        pr.apply(mortgage_records())
        apply_records(pr)
        pr.apply({"keystores": [signing_keystore("Spare")]})
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        with serving(pr, tmp / "inbox") as base:
            yield pr, base


browser = browser_fixture()


@pytest.fixture(params=[WIDE, PHONE], ids=["wide", "phone"])
def page(browser: Browser, world: World, request: pytest.FixtureRequest) -> Iterator[Page]:
    with logged_in_page(browser, world[1], viewport=request.param) as opened:
        yield opened


def width(page: Page) -> int:
    size = page.viewport_size
    assert size is not None
    return size["width"]


def notice(page: Page) -> str:
    return page.locator("p.notice").inner_text()


def test_one_record_of_each_type_is_deleted(world: World, page: Page) -> None:
    pr, base = world
    # Each width deletes its own copy: the records the other width deleted come back.
    apply_records(pr)
    pr.apply({"keystores": [signing_keystore("Spare")]})
    for kind, key, what in [
        (catalog.ACCOUNTS, "Spare", "account Spare"),
        (catalog.AUTH_PROFILES, "unused", "profile unused"),
        (catalog.KEYSTORES, "Spare", "keystore Spare"),
        (catalog.OPERATORS, "frank", "operator frank"),
        (catalog.CORRESPONDENCE, "Unused letter", "correspondence Unused letter"),
        (catalog.CASE_TYPES, "A-B-D", "case type A-B-D"),
    ]:
        page.goto(f"{base}/{kind.slug}")
        # The filter box narrows the table to the record's row before its button is used.
        page.locator(f"input[data-filter-for='{kind.slug}-table']").fill(key)
        page.get_by_role("button", name=f"Delete {what}", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Delete {kind.name} {key}?")
        if kind is catalog.ACCOUNTS:
            shot(page, f"delete-confirm-{width(page)}")
        page.get_by_role("button", name=f"Delete {kind.name} {key}").click()
        page.wait_for_url(re.compile(rf"/{kind.slug}$"))
        expect(page.locator("p.notice.success")).to_have_text(f"{kind.label} {key} deleted.")
        expect(page.get_by_role("button", name=f"Delete {what}", exact=True)).to_have_count(0)
        with pytest.raises(NotFoundError):
            catalog.record(pr, kind, key)


def test_a_record_in_use_is_refused_as_an_error(world: World, page: Page) -> None:
    pr, base = world
    page.goto(f"{base}/auth-profiles/entra")
    page.get_by_role("button", name="Delete profile entra", exact=True).click()
    page.wait_for_url(re.compile(r"/auth-profiles$"))
    error = page.locator("p.notice.error")
    expect(error).to_have_text("Not deleted: auth profile entra is still used by account Graph.")
    expect(error).to_have_attribute("role", "alert")
    expect(page.locator("p.notice.success")).to_have_count(0)
    shot(page, f"delete-refused-{width(page)}")
    catalog.record(pr, catalog.AUTH_PROFILES, "entra")


def test_the_confirmation_can_be_cancelled(world: World, page: Page) -> None:
    pr, base = world
    pr.apply({"correspondence": [{"name": "Kept", "subject": "k", "html": "<p>k</p>"}]})
    page.goto(f"{base}/correspondence/edit?name=Kept")
    page.get_by_role("button", name="Delete correspondence Kept", exact=True).click()
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(re.compile(r"/correspondence/edit\?name=Kept$"))
    catalog.record(pr, catalog.CORRESPONDENCE, "Kept")
