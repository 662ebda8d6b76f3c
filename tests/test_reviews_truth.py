"""What reviews say about their escalation, refused images in an edit, and the outbox and
case views of an email awaiting review: each says only what happened or will."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.errors import InvalidFieldsError
from postroom.outbox import OutboxStatus
from tests.apikit import PREFIX, issue_tokens, mounted
from tests.conftest import TEST_KEY, make_settings
from tests.imagekit import png
from tests.studiokit import csrf_of, log_in, studio_client
from tests.test_reviews import _overdue, open_case, review_records

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC"


def opened(tmp_path: Path, records: dict[str, Any]) -> Postroom:
    pr = Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}"))
    pr.apply(records)
    return pr


def cli(pr: Postroom, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        ["--database-url", pr.settings.database_url, *args],
        env={"POSTROOM_SECRET_KEY": TEST_KEY, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    return result.output


def studio_page(pr: Postroom, path: str, tmp_path: Path) -> str:
    with studio_client(pr, inbox_dir=tmp_path / "inbox") as client:
        log_in(client)
        got = client.get(path)
        assert got.status_code == 200, got.text
        return got.text


def escalation_of(html: str) -> str:
    found = re.search(r'<dd id="review-escalation">(.*?)</dd>', html, re.S)
    assert found is not None, "no escalation on the review page"
    return re.sub(r"<[^>]+>", "", found.group(1))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "inbox").mkdir()
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    return tmp_path


def test_a_manager_is_said_told_only_once_told(env: Path) -> None:
    with opened(env, review_records(2525)) as pr:  # carol reviews, and reports to boss
        open_case(pr)
        [review] = pr.reviews.search()
        before = pr.reviews.detail(review.id).escalation
        assert before is not None
        assert re.fullmatch(f"manager boss is told at {WHEN} if still waiting", before.describe())
        assert "escalation: manager boss is told at" in cli(pr, "reviews", "show", str(review.id))
        page = studio_page(pr, f"/reviews/{review.id}", env)
        assert re.fullmatch(f"manager boss is told at {WHEN} if still waiting", escalation_of(page))

        _overdue(pr, review.id)
        assert pr.reviews.escalate_due() == 1
        assert pr.reviews.get(review.id).escalated_to == "boss"
        shown = cli(pr, "reviews", "show", str(review.id))
        assert re.search(f"escalation: manager boss told at {WHEN}", shown)
        view = json.loads(cli(pr, "reviews", "show", str(review.id), "--json"))
        assert view["escalated_to"] == "boss"
        assert view["escalation"].startswith("manager boss told at ")
        page = studio_page(pr, f"/reviews/{review.id}", env)
        assert re.fullmatch(f"manager boss told at {WHEN}", escalation_of(page))
        listed = studio_page(pr, "/reviews", env)
        assert "manager boss told" in listed


def test_a_reviewer_reporting_to_nobody_is_warned_and_nobody_is_said_told(env: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{env / 'p.db'}")) as pr:
        report = pr.apply(review_records(2525, by={"operator": "boss"}))
        assert (
            "case type A-B-C: step Welcome: reviewer operator boss reports to nobody, so a "
            "review waiting too long tells nobody"
        ) in report.warnings
        open_case(pr)
        [review] = pr.reviews.search()
        why = "(operator boss reports to nobody)"
        said = re.escape(why)
        shown = cli(pr, "reviews", "show", str(review.id))
        assert re.search(f"escalation: nobody would be told at {WHEN} {said}", shown)
        assert "manager" not in shown
        page = studio_page(pr, f"/reviews/{review.id}", env)
        assert re.fullmatch(f"nobody would be told at {WHEN} {said}", escalation_of(page))
        assert "Manager told" not in page

        _overdue(pr, review.id)
        assert pr.reviews.escalate_due() == 1
        assert pr.reviews.get(review.id).escalated_to is None
        shown = cli(pr, "reviews", "show", str(review.id))
        assert re.search(f"escalation: escalated at {WHEN}: nobody to tell {said}", shown)
        assert "manager told" not in shown
        page = studio_page(pr, f"/reviews/{review.id}", env)
        assert re.fullmatch(f"escalated at {WHEN}: nobody to tell {said}", escalation_of(page))
        client = TestClient(mounted(pr))
        view = client.get(f"{PREFIX}/reviews/{review.id}", headers=issue_tokens(pr).admin).json()
        assert (view["escalated_to"], view["escalated_at"] is not None) == (None, True)
        assert view["escalation"].endswith(f"nobody to tell {why}")


def test_an_outside_reviewer_and_a_manager_without_email_tell_nobody(env: Path) -> None:
    records = review_records(2525, by={"party": "Customer"})  # an address, no operator
    with opened(env, records) as pr:
        open_case(pr)
        [review] = pr.reviews.search()
        note = pr.reviews.detail(review.id).escalation
        assert note is not None
        assert note.describe().endswith("(the Customer party is not an operator)")
        assert note.describe().startswith("nobody would be told at ")
        _overdue(pr, review.id)
        pr.reviews.escalate_due()
        note = pr.reviews.detail(review.id).escalation
        assert note is not None
        assert note.done
        assert note.manager is None
        assert note.describe().endswith("nobody to tell (the Customer party is not an operator)")

    records = review_records(2525, by={"operator": "carol"})
    del records["operators"][0]["email"]  # boss, carol's manager, has no address
    with Postroom(make_settings(f"sqlite:///{env / 'q.db'}")) as pr:
        report = pr.apply(records)
        assert (
            "case type A-B-C: step Welcome: the manager of reviewer operator carol, boss, has "
            "no email address, so a review waiting too long tells nobody"
        ) in report.warnings
        open_case(pr)
        [review] = pr.reviews.search()
        note = pr.reviews.detail(review.id).escalation
        assert note is not None
        assert note.describe().endswith("(manager boss has no email address)")
        _overdue(pr, review.id)
        pr.reviews.escalate_due()
        assert pr.reviews.get(review.id).escalated_to is None
        note = pr.reviews.detail(review.id).escalation
        assert note is not None
        assert note.describe().endswith(
            "nobody to tell (manager boss not notified: operator boss has no email address)"
        )


def test_apply_is_quiet_when_the_reviewers_manager_can_be_told(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        report = pr.apply(review_records(2525, by={"operator": "carol"}))
        assert not [w for w in report.warnings if "review waiting" in w]


def image_records() -> dict[str, Any]:
    """The reviewed welcome email as a letter with one inline image, ``logo``."""
    records = review_records(2525)
    records["correspondence"] = [
        {
            "name": "Welcome",
            "subject": "Welcome to case {{ case.id }}",
            "html": '<p><img src="cid:logo" alt="Logo"> Dear customer</p>',
            "images": {
                "logo": {"filename": "logo.png", "content": base64.b64encode(png(8, 8)).decode()}
            },
        }
    ]
    step = records["case_types"][0]["steps"][0]
    del step["subject"], step["body"]
    step["correspondence"] = "Welcome"
    return records


@pytest.fixture
def imaged(env: Path) -> Iterator[Postroom]:
    with opened(env, image_records()) as pr:
        yield pr


BROKEN = '<p><img src="cid:nope"> hi</p>'


def test_an_edit_showing_an_image_the_email_lacks_is_refused(imaged: Postroom, env: Path) -> None:
    open_case(imaged)
    [review] = imaged.reviews.search()
    assert imaged.reviews.detail(review.id).images == ("logo",)
    with pytest.raises(InvalidFieldsError) as refused:
        imaged.reviews.approve(review.id, by="t", html=BROKEN)
    [issue] = refused.value.issues
    assert issue.field == "html"
    assert issue.message.startswith("shows cid:nope, but the email has no such image")
    assert "(its images: logo)" in issue.message

    client = TestClient(mounted(imaged))
    admin = issue_tokens(imaged).admin
    answer = client.post(
        f"{PREFIX}/reviews/{review.id}/approve", headers=admin, json={"html": BROKEN}
    )
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "body.html"
    assert "cid:nope" in error["message"]
    assert "logo" in error["message"]

    (env / "broken.html").write_text(BROKEN)
    result = CliRunner().invoke(
        app,
        ["--database-url", imaged.settings.database_url, "reviews", "approve", str(review.id),
         "--html-file", str(env / "broken.html")],
        env={"POSTROOM_SECRET_KEY": TEST_KEY},
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.output.startswith("error: html: shows cid:nope, ")

    with studio_client(imaged, inbox_dir=env / "inbox") as studio:
        log_in(studio)
        form = studio.get(f"/reviews/{review.id}")
        posted = studio.post(
            f"/reviews/{review.id}/approve",
            data={"csrf_token": csrf_of(form.text), "subject": "S", "html": BROKEN,
                  "text": ""},
        )  # fmt: skip
        assert posted.status_code == 422
        assert "cid:nope" in posted.text
        assert "its images: logo" in posted.text
    assert imaged.reviews.get(review.id).state == "pending"
    [outbox_id] = review.outbox_ids
    assert imaged.outbox_entry(outbox_id).status is OutboxStatus.AWAITING_REVIEW


def test_an_edit_keeping_or_dropping_the_image_is_approved(imaged: Postroom) -> None:
    first, second = open_case(imaged), open_case(imaged)
    reviews = {r.case_id: r for r in imaged.reviews.search()}
    kept = imaged.reviews.approve(
        reviews[first].id, by="t", html='<p><img src="cid:logo" alt="Logo"> Hello again</p>'
    )
    assert kept.edited is not None
    dropped = imaged.reviews.approve(reviews[second].id, by="t", html="<p>No picture</p>")
    assert dropped.edited is not None
    with imaged.engine.connect() as conn:
        message = imaged.outbox_store.message_bytes(conn, dropped.outbox_ids[0])
    assert message is not None
    assert b"image/png" not in message


def test_an_email_awaiting_review_says_so_in_the_outbox_and_the_case(
    env: Path,
) -> None:
    with opened(env, review_records(2525)) as pr:
        case_id = open_case(pr)
        [review] = pr.reviews.search()
        [outbox_id] = review.outbox_ids
        shown = cli(pr, "outbox", "show", str(outbox_id))
        assert f"next attempt: waits for review #{review.id}" in shown
        page = studio_page(pr, f"/outbox/{outbox_id}", env)
        entry = re.search(r'<dd id="entry-next">(.*?)</dd>', page, re.S)
        assert entry is not None
        assert entry.group(1) == (
            f'waits for <a href="/reviews/{review.id}">review #{review.id}</a>'
        )
        conversation = cli(pr, "cases", "show", case_id).split("conversation")[-1]
        [row] = [line for line in conversation.splitlines() if f"#{outbox_id}" in line]
        assert "awaiting_review" in row
        assert " sent " not in row

        pr.reviews.reject(review.id, by="t", reason="No")
        conversation = cli(pr, "cases", "show", case_id).split("conversation")[-1]
        [row] = [line for line in conversation.splitlines() if f"#{outbox_id}" in line]
        assert "rejected" in row
        assert " sent " not in row
        timeline = studio_page(pr, f"/cases/{case_id}", env)
        assert "<strong>Outgoing</strong>" in timeline
        assert "<strong>Sent</strong>" not in timeline
