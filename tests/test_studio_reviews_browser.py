"""The review queue in Chromium: a pending review, editing and approving, then the outcome."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from postroom import Postroom
from postroom.reviews.models import ReviewState
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.studiokit import (
    ADMIN,
    PASSWORD,
    accessibility_problems,
    agent_running,
    browser_fixture,
    logged_in_page,
    serving,
    shot,
    skip_without_chromium,
)
from tests.test_reviews import CUSTOMER, open_case, review_records
from tests.test_server import wait_for

skip_without_chromium()
browser = browser_fixture()


def test_a_review_is_edited_and_approved_in_the_studio(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    with (
        smtp_server() as srv,
        Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr,
    ):
        pr.apply(review_records(srv.port))
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        case_id = open_case(pr)
        rejected_case = open_case(pr)
        [later, first] = pr.reviews.search()
        pr.reviews.reject(later.id, by="studio:someone", reason="Sent by mistake")
        with (
            agent_running(pr),
            serving(pr, tmp_path / "inbox") as base,
            logged_in_page(browser, base, viewport={"width": 1280, "height": 900}) as page,
        ):
            page.goto(base + "/reviews")
            assert page.get_by_role("link", name="Reviews").get_attribute("aria-current") == "page"
            rows = page.locator("#reviews tbody tr")
            assert rows.first.get_attribute("data-state") == "pending"  # pending first
            assert page.locator("#pending-count").inner_text() == "1"
            assert "CaseManager (operator carol)" in rows.first.inner_text()
            shot(page, "review-queue")
            assert accessibility_problems(page) == []

            page.goto(f"{base}/cases/{case_id}")
            page.locator("#case-reviews").get_by_role("link", name=f"review #{first.id}").click()
            page.wait_for_url(f"{base}/reviews/{first.id}")
            frame = page.frame_locator("#review-body")
            assert "your case" in frame.locator("body").inner_text()
            assert CUSTOMER in page.locator("#review-email").inner_text()
            escalation = page.locator("#review-escalation").inner_text()
            assert escalation.startswith("manager boss is told at ")  # carol reports to boss
            shot(page, "review-email")
            assert accessibility_problems(page) == []

            page.get_by_label("Subject").fill("Your case is open")
            page.get_by_label("HTML").fill("<p>Dear customer, we opened your case today.</p>")
            page.get_by_role("button", name="Approve and send").click()
            page.wait_for_url(f"{base}/reviews/{first.id}")
            assert "approved with your changes" in page.locator(".notice").inner_text()
            assert "+Your case is open" in page.locator("#review-diff").inner_text()
            assert "studio:" + ADMIN in page.locator("#review-decision").inner_text()
            assert page.locator("#approve-form").count() == 0
            wait_for(lambda: len(srv.sink.received) == 1, limit=20)

            page.goto(f"{base}/reviews/{later.id}")
            assert page.locator("#review-reason").inner_text() == "Sent by mistake"
            page.goto(base + "/reviews?state=pending")
            assert "No reviews pending" in page.locator("#reviews").inner_text()
        [received] = srv.sink.received
        assert received.message["Subject"] == "Your case is open"
        done = pr.reviews.get(first.id)
        assert done.state is ReviewState.APPROVED
        assert done.decided_by == f"studio:{ADMIN}"
        assert pr.reviews.pending_of_case(rejected_case) == []


def test_rejecting_needs_a_reason(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr:
        pr.apply(review_records(2525))
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        open_case(pr)
        [review] = pr.reviews.search()
        with (
            serving(pr, tmp_path / "inbox") as base,
            logged_in_page(browser, base, viewport={"width": 1280, "height": 900}) as page,
        ):
            page.goto(f"{base}/reviews/{review.id}")
            page.get_by_label("Reason for rejecting").fill("Wrong amount in the letter")
            page.get_by_role("button", name="Reject: send nothing").click()
            page.wait_for_url(f"{base}/reviews/{review.id}")
            assert "nothing was sent" in page.locator(".notice").inner_text()
            assert "rejected" in page.locator("#review-state").inner_text()
        done = pr.reviews.get(review.id)
        assert done.state is ReviewState.REJECTED
        assert done.reason == "Wrong amount in the letter"
