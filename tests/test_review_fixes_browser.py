"""Revoking an API token in a real browser: the buttons say which token, and it asks first."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from postroom.identity import Scope
from tests.studiokit import WIDE, browser_fixture, logged_in_page, mortgage_studio

browser = browser_fixture()


def test_a_token_is_revoked_only_after_confirming(browser: Browser, tmp_path: Path) -> None:
    with mortgage_studio(tmp_path) as (pr, _, base):
        first = pr.identity.create_token(name="tour", scopes={Scope.SEND})
        second = pr.identity.create_token(name="tour", scopes={Scope.SEND})
        with logged_in_page(browser, base, viewport=WIDE) as page:
            page.goto(base + "/tokens")
            name = f"Revoke token tour ({first.token.id})"
            page.get_by_role("button", name=name, exact=True).click()
            question = f"Revoke token tour ({first.token.id})? Applications using it will get 401."
            expect(page.get_by_text(question)).to_be_visible()
            assert pr.identity.authenticate(first.value) is not None  # only asked

            page.get_by_role("link", name="Cancel").click()
            expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
            page.get_by_role("button", name=name, exact=True).click()
            page.get_by_role("button", name=name, exact=True).click()  # the confirmation's
            expect(page.locator(".notice")).to_contain_text(
                f"Token {first.token.id} (tour) revoked."
            )
            assert pr.identity.authenticate(first.value) is None
            assert pr.identity.authenticate(second.value) is not None
