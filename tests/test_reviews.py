"""Review before sending: approve (as composed or edited), reject, expiry, escalation, races."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, InvalidFieldsError, StateError
from postroom.outbox import OutboxStatus
from postroom.reviews.models import ReviewState
from tests.conftest import make_settings
from tests.fakes import ServerInfo, smtp_server
from tests.test_delivery import account
from tests.test_server import wait_for

CUSTOMER = "customer@example.net"


def body_part(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    return str(part.get_content())


def review_records(port: int, *, by: dict[str, str] | None = None) -> dict[str, Any]:
    """Operators alice → carol → boss, and a case type whose welcome email is reviewed."""
    return {
        "operators": [
            {"id": "boss", "name": "Bo Boss", "email": "boss@example.org"},
            {
                "id": "carol",
                "name": "Carol Reviewer",
                "email": "carol@example.org",
                "reports_to": "boss",
            },
            {
                "id": "alice",
                "name": "Alice Clerk",
                "email": "alice@example.org",
                "reports_to": "carol",
            },
        ],
        "accounts": [account(port)],
        "case_types": [
            {
                "class": "A-B-C",
                "class_group": "A-B",
                "id_prefix": "R-",
                "fields": [{"name": "customer_email", "type": "email"}],
                "parties": {
                    "Owner": "creator",
                    "CaseManager": "creator.reports_to",
                    "Customer": "data.customer_email",
                },
                "steps": [
                    {
                        "name": "Welcome",
                        "on": "created",
                        "to": [{"party": "Customer"}],
                        "subject": "Welcome to case {{ case.id }}",
                        "body": "<p>Dear customer,</p><p>your case {{ case.id }} is open.</p>",
                        "review": {
                            "by": by or {"party": "CaseManager"},
                            "escalate_after_seconds": 60,
                        },
                    }
                ],
            }
        ],
    }


def open_case(pr: Postroom) -> str:
    return pr.cases.create("A-B-C", data={"customer_email": CUSTOMER}, operator="alice").id


def run_agent(pr: Postroom) -> None:
    asyncio.run(pr.agent().run(until_idle=True))


def history(pr: Postroom, case_id: str) -> list[tuple[str, str, str]]:
    return [(h.actor, h.action, h.detail) for h in pr.cases.get(case_id).history]


@pytest.fixture
def mail() -> Any:
    with smtp_server() as srv:
        yield srv


@pytest.fixture
def reviewed(database_url: str, mail: ServerInfo) -> Any:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply(review_records(mail.port))
        yield pr


def test_a_reviewed_email_waits_and_is_sent_once_approved(
    reviewed: Postroom, mail: ServerInfo
) -> None:
    case_id = open_case(reviewed)
    [review] = reviewed.reviews.search(state=ReviewState.PENDING)
    [outbox_id] = review.outbox_ids
    assert reviewed.outbox_entry(outbox_id).status is OutboxStatus.AWAITING_REVIEW
    line = next(d for _, a, d in history(reviewed, case_id) if a == "email-review")
    assert line.startswith(f"step 'Welcome': 'Welcome to case {case_id}' to {CUSTOMER} awaits")
    assert "awaits review by CaseManager (operator carol)" in line
    assert f"as review #{review.id} (outbox #{outbox_id})" in line
    assert review.reviewer.operator == "carol"
    run_agent(reviewed)  # an agent never claims an email awaiting review
    assert mail.sink.received == []

    reviewed.reviews.approve(review.id, by="cli:tester")
    run_agent(reviewed)
    [received] = mail.sink.received
    assert received.rcpt_tos == [CUSTOMER]
    assert received.message["Subject"] == f"Welcome to case {case_id}"
    assert reviewed.outbox_entry(outbox_id).status is OutboxStatus.SENT
    done = reviewed.reviews.get(review.id)
    assert (done.state, done.decided_by, done.edited) == (ReviewState.APPROVED, "cli:tester", None)
    lines = history(reviewed, case_id)
    assert ("cli:tester", "review-approved",
            f"review #{review.id} (step 'Welcome') approved by cli:tester as composed: "
            f"outbox #{outbox_id} queued") in lines  # fmt: skip
    with pytest.raises(StateError, match="approved already by cli:tester"):
        reviewed.reviews.reject(review.id, by="cli:late", reason="too late")
    run_agent(reviewed)
    assert len(mail.sink.received) == 1  # exactly once


def test_the_reviewers_edit_is_what_is_sent_and_the_diff_is_in_the_history(
    reviewed: Postroom, mail: ServerInfo
) -> None:
    case_id = open_case(reviewed)
    [review] = reviewed.reviews.search()
    reviewed.reviews.approve(
        review.id,
        by="studio:carol",
        subject="Your case is open",
        html="<p>Dear customer,</p><p>we opened your case {{ case.id }} today.</p>",
    )
    run_agent(reviewed)
    [received] = mail.sink.received
    message = received.message
    assert message["Subject"] == "Your case is open"
    text = body_part(message, "plain")
    # Sent as written: the reviewer's text is not a template.
    assert "we opened your case {{ case.id }} today." in text
    assert "{{ case.id }}" in body_part(message, "html")
    lines = [d for _, a, d in history(reviewed, case_id) if a == "review-edited"]
    [diff] = lines
    assert diff.startswith(f"review #{review.id} edited by studio:carol:\n--- subject (composed)")
    assert f"-Welcome to case {case_id}\n+Your case is open" in diff
    assert "+<p>Dear customer,</p><p>we opened your case {{ case.id }} today.</p>" in diff
    assert "--- text (composed)" in diff  # derived from the new HTML
    done = reviewed.reviews.get(review.id)
    assert done.edited is not None
    assert done.edited.subject == "Your case is open"
    assert reviewed.reviews.detail(review.id).diff in diff


def test_a_rejected_email_is_never_sent(reviewed: Postroom, mail: ServerInfo) -> None:
    case_id = open_case(reviewed)
    [review] = reviewed.reviews.search()
    with pytest.raises(InvalidFieldsError, match="reason"):
        reviewed.reviews.reject(review.id, by="api:ops", reason="   ")
    reviewed.reviews.reject(review.id, by="api:ops", reason="Wrong customer address")
    run_agent(reviewed)
    assert mail.sink.received == []
    [outbox_id] = review.outbox_ids
    entry = reviewed.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.REJECTED
    assert ("api:ops", "review-rejected",
            f"review #{review.id} (step 'Welcome') rejected by api:ops: Wrong customer "
            f"address; outbox #{outbox_id} not sent") in history(reviewed, case_id)  # fmt: skip
    with pytest.raises(StateError, match="rejected already by api:ops"):
        reviewed.reviews.approve(review.id, by="api:other")
    with pytest.raises(StateError):
        reviewed.retry(outbox_id)  # rejected is final


def test_retry_and_cancel_cannot_bypass_a_review(reviewed: Postroom) -> None:
    open_case(reviewed)
    [review] = reviewed.reviews.search()
    [outbox_id] = review.outbox_ids
    with pytest.raises(StateError, match=f"awaits review #{review.id}: it cannot be retried"):
        reviewed.retry(outbox_id)
    with pytest.raises(StateError, match=r"cannot be cancelled; approve .* or reject it"):
        reviewed.cancel(outbox_id)
    assert reviewed.outbox_entry(outbox_id).status is OutboxStatus.AWAITING_REVIEW
    with reviewed.engine.begin() as conn:  # the guarded move itself refuses too
        with pytest.raises(StateError):
            reviewed.outbox_store._move(conn, outbox_id, OutboxStatus.QUEUED)


def test_bad_edits_are_refused_naming_the_field(reviewed: Postroom) -> None:
    open_case(reviewed)
    [review] = reviewed.reviews.search()
    with pytest.raises(InvalidFieldsError) as caught:
        reviewed.reviews.approve(review.id, by="t", subject="two\nlines", html="  ")
    assert {i.field for i in caught.value.issues} == {"subject", "html"}
    with pytest.raises(InvalidFieldsError, match="text"):
        reviewed.reviews.approve(review.id, by="t", text="bad \x00 text")
    assert reviewed.reviews.get(review.id).state is ReviewState.PENDING


def test_approve_and_reject_at_once_one_wins(reviewed: Postroom) -> None:
    open_case(reviewed)
    [review] = reviewed.reviews.search()
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(name: str) -> None:
        start.wait()
        try:
            if name == "approve":
                reviewed.reviews.approve(review.id, by="approver", subject="Changed")
            else:
                reviewed.reviews.reject(review.id, by="rejecter", reason="no")
            outcomes[name] = "won"
        except StateError as exc:
            outcomes[name] = f"lost: {exc}"

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["lost", "won"], outcomes
    done = reviewed.reviews.get(review.id)
    [outbox_id] = done.outbox_ids
    status = reviewed.outbox_entry(outbox_id).status
    if outcomes["approve"] == "won":
        assert (done.state, status) == (ReviewState.APPROVED, OutboxStatus.QUEUED)
    else:
        assert (done.state, status) == (ReviewState.REJECTED, OutboxStatus.REJECTED)


def test_an_expired_review_ends_expired_and_cannot_be_decided(reviewed: Postroom) -> None:
    case_id = open_case(reviewed)
    [review] = reviewed.reviews.search()
    [outbox_id] = review.outbox_ids
    with reviewed.engine.begin() as conn:
        conn.execute(
            update(tables.outbox)
            .where(tables.outbox.c.id == outbox_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    run_agent(reviewed)  # the claim's expiry sweep
    assert reviewed.outbox_entry(outbox_id).status is OutboxStatus.EXPIRED
    assert reviewed.reviews.get(review.id).state is ReviewState.EXPIRED
    assert any(a == "review-expired" for _, a, _ in history(reviewed, case_id))
    with pytest.raises(StateError, match="expired"):
        reviewed.reviews.approve(review.id, by="late")


def test_a_decision_after_the_expiry_time_finds_it_expired(reviewed: Postroom) -> None:
    open_case(reviewed)
    [review] = reviewed.reviews.search()
    with reviewed.engine.begin() as conn:  # no agent ran its sweep yet
        conn.execute(
            update(tables.outbox)
            .where(tables.outbox.c.review_id == review.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(StateError, match=f"review #{review.id} expired"):
        reviewed.reviews.approve(review.id, by="late")
    assert reviewed.reviews.get(review.id).state is ReviewState.EXPIRED
    [outbox_id] = review.outbox_ids
    assert reviewed.outbox_entry(outbox_id).status is OutboxStatus.EXPIRED


def _overdue(pr: Postroom, review_id: int) -> None:
    with pr.engine.begin() as conn:
        conn.execute(
            update(tables.reviews)
            .where(tables.reviews.c.id == review_id)
            .values(escalate_at=utcnow() - timedelta(seconds=1))
        )


def test_an_overdue_review_notifies_the_managers_once(reviewed: Postroom, mail: ServerInfo) -> None:
    case_id = open_case(reviewed)
    [review] = reviewed.reviews.search()
    assert reviewed.reviews.escalate_due() == 0  # not due yet
    _overdue(reviewed, review.id)
    # The agents' heartbeat runs the sweep: an agent working for a while escalates it.
    with agent_thread(reviewed):
        wait_for(lambda: len(mail.sink.received) == 1, limit=20)
    assert reviewed.reviews.escalate_due() == 0  # once
    [received] = mail.sink.received
    assert received.rcpt_tos == ["boss@example.org"]
    assert received.message["Subject"].startswith(f"Review #{review.id} for case {case_id} is")
    body = body_part(received.message, "plain")
    assert "manager of operator carol" in body
    assert "http" not in body
    done = reviewed.reviews.get(review.id)
    assert done.escalated_at is not None
    assert done.state is ReviewState.PENDING
    assert done.overdue(utcnow())
    [line] = [d for _, a, d in history(reviewed, case_id) if a == "review-escalated"]
    assert "manager boss notified by outbox #" in line


def test_no_manager_is_said_in_the_history(database_url: str, mail: ServerInfo) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply(review_records(mail.port, by={"operator": "boss"}))
        case_id = open_case(pr)
        [review] = pr.reviews.search()
        assert review.reviewer.describe() == "operator boss"
        _overdue(pr, review.id)
        assert pr.reviews.escalate_due() == 1
        assert pr.reviews.escalate_due() == 0
        [line] = [d for _, a, d in history(pr, case_id) if a == "review-escalated"]
        assert line.endswith("no manager notified: operator boss reports to nobody")
        assert pr.reviews.get(review.id).escalated_at is not None


def test_a_reviewer_party_the_case_lacks_fails_the_email(tmp_path: Path) -> None:
    records = review_records(1025)
    records["case_types"][0]["parties"]["Approver"] = "data.approver"
    records["case_types"][0]["steps"][0]["review"]["by"] = {"party": "Approver"}
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply(records)
        case = pr.cases.create("A-B-C", data={"customer_email": CUSTOMER}, operator="alice")
        assert case.failed_emails() == [
            f"step 'Welcome': case {case.id} has no Approver work party to review the email"
        ]
        [entry] = pr.outbox()
        assert entry.status is OutboxStatus.FAILED
        assert pr.reviews.search() == []


def test_apply_refuses_a_review_by_an_unknown_operator(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        with pytest.raises(ConfigurationError, match="reviewed by unknown operator 'nobody'"):
            pr.apply(review_records(1025, by={"operator": "nobody"}))


class agent_thread:
    """An agent running in a thread (its heartbeat runs the escalation sweep)."""

    def __init__(self, pr: Postroom) -> None:
        self.pr = pr
        self.stop = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.pr.agent().run(stop=self.stop))

    def __enter__(self) -> agent_thread:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
