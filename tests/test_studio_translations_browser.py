"""The Studio's translations page in a real browser: a German translation added, previewed
in German against a case (dates and amounts written as German writes them), saved as a
new version by the Studio user, refused with the reason when it uses an unknown filter,
edited and removed."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.studiokit import (
    PHONE,
    WIDE,
    accessibility_problems,
    browser_fixture,
    layout_problems,
    log_in_page,
    logged_in_page,
    mortgage_studio,
    shot,
    skip_without_chromium,
    watch,
)

skip_without_chromium()
browser = browser_fixture()

CLASS = "MyOrg-Claims-Work-Claim"
LETTER = {
    "name": "Decision",
    "language": "en",
    "subject": "Decision of {{ case.data.decided | format_date }}",
    "html": "<p>We pay {{ case.data.amount | format_currency('EUR') }}.</p>",
}
CASE_TYPE = {"class": CLASS, "class_group": "MyOrg-Claims-Work", "id_prefix": "CL-"}
GERMAN_SUBJECT = "Entscheidung vom {{ case.data.decided | format_date }}"
GERMAN_HTML = (
    "<p>Wir zahlen {{ case.data.amount | format_currency('EUR') }} "
    "am {{ case.data.due | format_date('long') }}.</p>"
)


def test_a_german_translation_is_added_previewed_edited_and_removed(
    browser: Browser, tmp_path: Path
) -> None:
    with mortgage_studio(tmp_path, case_types=[CASE_TYPE]) as (pr, _, base):
        pr.apply({"correspondence": [LETTER]})
        case = pr.cases.create(
            CLASS, data={"amount": "250000", "decided": "2026-12-24", "due": "2027-01-15"}
        )
        # The refused save answers 422, which the browser logs as a failed resource: that
        # line, and nothing else, is expected here.
        problems: list[str] = []
        context = browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
        try:
            page = watch(context.new_page(), problems)
            log_in_page(page, base)
            page.goto(base + "/correspondence/edit?name=Decision")
            page.locator("#translations-link").click()
            expect(page.locator("h1")).to_have_text("Translations of Decision")
            expect(page.locator("#translations-table")).to_contain_text("No translations yet")

            form = page.locator("#translation-form")
            form.get_by_label("Language").fill("de")
            form.get_by_label("Subject").fill(GERMAN_SUBJECT)
            form.get_by_label("HTML body (Jinja2)").fill(GERMAN_HTML)
            form.get_by_label("Preview against case").select_option(case.id)
            page.locator("#preview-button").click()
            frame = page.frame_locator("#preview")
            expect(frame.locator("#subject")).to_have_text("Entscheidung vom 24.12.2026")
            expect(frame.locator("#body")).to_have_text(
                "Wir zahlen 250.000,00\xa0€ am 15. Januar 2027."
            )
            shot(page, "correspondence-translations")
            assert accessibility_problems(page) == []

            # An unknown filter is refused with its name and the closest known one.
            form.get_by_label("HTML body (Jinja2)").fill(
                "{% if case.data.amount %}{{ case.data.amount | format_curency('EUR') }}{% endif %}"
            )
            form.get_by_role("button", name="Save translation").click()
            expect(page.locator("#form-error")).to_contain_text(
                "uses unknown filter 'format_curency' (did you mean 'format_currency'?)"
            )
            expect(page.locator("#translation-form").get_by_label("Language")).to_have_value(
                "de"
            )  # the form keeps it
            with pr.engine.connect() as conn:
                assert pr.correspondence_store.get(conn, "Decision").translations == {}

            page.locator("#translation-form").get_by_label("HTML body (Jinja2)").fill(GERMAN_HTML)
            page.get_by_role("button", name="Save translation").click()
            expect(page.locator("#translation-de")).to_contain_text(
                "Entscheidung vom {{ case.data.decided | format_date }}"
            )
            with pr.engine.connect() as conn:
                stored = pr.correspondence_store.get(conn, "Decision")
                version = pr.correspondence_store.versions(conn)["Decision"]
            assert stored.translations["de"].html == GERMAN_HTML
            assert (stored.subject, stored.html) == (LETTER["subject"], LETTER["html"])
            assert version == 2

            page.get_by_role("link", name="Edit translation de").click()
            expect(page.locator("#form-h")).to_have_text("Edit the de translation")
            expect(
                page.locator("#translation-form").get_by_label("HTML body (Jinja2)")
            ).to_have_value(GERMAN_HTML)
            page.locator("#translation-form").get_by_label("Subject").fill(
                "Bescheid vom {{ case.data.decided | format_date }}"
            )
            page.get_by_role("button", name="Save translation").click()
            expect(page.locator("#translation-de")).to_contain_text("Bescheid vom")

            page.get_by_role("button", name="Remove translation de").click()
            expect(page.locator("#translations-table")).to_contain_text("No translations yet")
            expect(page.locator("p.notice")).to_have_text("Translation de of Decision removed.")
        finally:
            context.close()
        assert [p for p in problems if "status of 422" not in p] == []
        assert len(problems) == 1
        with pr.engine.connect() as conn:
            assert pr.correspondence_store.get(conn, "Decision").translations == {}
            assert pr.correspondence_store.versions(conn)["Decision"] == 4
        with logged_in_page(browser, base, viewport=PHONE) as page:
            page.goto(base + "/correspondence/translations?name=Decision")
            assert layout_problems(page) == []
