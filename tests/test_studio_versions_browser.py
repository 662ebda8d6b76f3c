"""A correspondence's versions in a real browser: the Studio editor saves version 2 as its
user, the history lists both with the email each rendered (linked to the outbox filtered
by version), the diff colours the changed lines, an email links to its version, and
restoring version 1 (after a confirmation showing what changes) saves version 3."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from postroom.correspondence import versions
from tests.studiokit import (
    WIDE,
    accessibility_problems,
    browser_fixture,
    logged_in_page,
    mortgage_studio,
    shot,
    skip_without_chromium,
)

skip_without_chromium()
browser = browser_fixture()

CASE_TYPE = "MyOrg-Mortgage-Work-MortgageRequest"
NAME = "Mortgage case creation"
DATA = {"applicant": "Jane Doe", "amount": "250000", "customer_email": "j@x.net"}
OLD_LINE = "<p>Status: {{ case.status }}.</p>"
NEW_LINE = "<p>Your request is now {{ case.status }}; we answer within two days.</p>"


def test_history_diff_and_restore(browser: Browser, tmp_path: Path) -> None:
    with mortgage_studio(tmp_path) as (pr, _, base):
        first = pr.cases.create(CASE_TYPE, data=DATA, operator="alice")
        with logged_in_page(browser, base, viewport=WIDE) as page:
            # Version 2, saved in the Studio's editor by its user.
            page.goto(f"{base}/correspondence/edit?name=Mortgage%20case%20creation")
            html = page.get_by_label("HTML body (Jinja2)")
            html.fill(html.input_value().replace(OLD_LINE, NEW_LINE))
            page.locator("#save").click()
            expect(page.locator(".notice")).to_contain_text("updated")
            second = pr.cases.create(CASE_TYPE, data=DATA, operator="alice")

            page.locator("#versions-link").click()
            expect(page.locator("h1")).to_have_text(f"Versions of {NAME}")
            rows = page.locator("#versions tbody tr")
            expect(rows).to_have_count(2)
            newest, oldest = rows.nth(0), rows.nth(1)
            expect(newest).to_contain_text("studio:admin")
            expect(newest).to_contain_text("current")
            expect(newest.locator("a.emails")).to_have_text("1 email")
            expect(oldest).to_contain_text("apply")
            expect(oldest.locator("a.emails")).to_have_text("1 email")

            # The diff of the last change is shown at once: the old line red, the new green.
            expect(page.locator("#diff-title")).to_have_text("Version 1 → version 2")
            removed = page.locator('[data-part="html"] tr.removed td.code')
            added = page.locator('[data-part="html"] tr.added td.code')
            expect(removed).to_have_count(1)
            expect(removed).to_contain_text(OLD_LINE)
            expect(added).to_contain_text(NEW_LINE)
            colours = added.evaluate("td => getComputedStyle(td).backgroundColor")
            assert colours == "rgb(204, 255, 216)"
            assert accessibility_problems(page) == []
            shot(page, "correspondence-versions")
            page.locator("#diff").scroll_into_view_if_needed()
            page.locator('[data-part="html"]').screenshot(
                path=str(Path(__file__).parent.parent / "test-artifacts" / "screenshots"
                         / "correspondence-diff.png")
            )  # fmt: skip

            # Comparing a version with itself says so.
            page.locator("#f-from").select_option("2")
            page.locator("#compare-button").click()
            expect(page.locator("#diff-same")).to_be_visible()

            # The emails of version 1: the outbox filtered to the first case's email,
            # which links back to its version.
            oldest = page.locator('#versions tr[data-version="1"]')
            oldest.locator("a.emails").click()
            listed = page.locator("#outbox tbody tr")
            expect(listed).to_have_count(1)
            expect(listed.first).to_contain_text(first.id)
            listed.first.locator("a").first.click()
            expect(page.locator("#entry-correspondence")).to_contain_text(NAME)
            expect(page.locator("#entry-language")).to_have_text("en")
            page.locator("#entry-version").click()
            expect(page.locator("h1")).to_contain_text(f"{NAME}, version 1")
            expect(page.locator("#version-html")).to_contain_text(OLD_LINE)

            # Restore version 1: a confirmation showing what changes, then version 3.
            page.goto(f"{base}/correspondence/versions?name=Mortgage%20case%20creation")
            page.locator("#restore-1").click()
            expect(page.locator("h1")).to_have_text(f"Restore version 1 of {NAME}?")
            expect(page.locator('[data-part="html"] tr.added td.code')).to_contain_text(OLD_LINE)
            page.locator("#confirm-restore-button").click()
            expect(page.locator(".notice")).to_contain_text("restored as version 3")
            newest = page.locator("#versions tbody tr").first
            expect(newest).to_contain_text("restored from version 1")
            expect(newest).to_contain_text("studio:admin")
            shot(page, "correspondence-restored")

    with pr.engine.connect() as conn:
        found = versions.history(conn, NAME)
        assert [(v.number, v.saved_by, v.emails) for v in found.versions] == [
            (3, "studio:admin", 0),
            (2, "studio:admin", 1),
            (1, "apply", 1),
        ]
        assert versions.version(conn, NAME, 3) == versions.version(conn, NAME, 1)
    assert {e.case_id: e.correspondence_version for e in pr.outbox()} == {
        first.id: 1,
        second.id: 2,
    }
