"""Sending through Microsoft Graph: the real client against the Microsoft double on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postroom import Case, Postroom
from postroom.auth import TokenCache
from postroom.outbox import OutboxEntry, OutboxStatus
from postroom.transports import Transports
from tests.conftest import case_type_with, make_settings
from tests.fake_microsoft import MAILBOX, FakeMicrosoft, microsoft_server
from tests.graphkit import graph_postroom, graph_records


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with microsoft_server() as fake:
        yield fake


def run_agent(postroom: Postroom) -> None:
    asyncio.run(postroom.agent().run(until_idle=True))


def graph_errors(ms: FakeMicrosoft, status: int) -> int:
    return sum(1 for *_, s in ms.requests if s == status)


def case_created_through(postroom: Postroom, ms: FakeMicrosoft, **account: Any) -> Case:
    """A case whose creation emails owner@example.org from a Graph account set so; sent."""
    step = {"on": "created", "to": [{"address": "owner@example.org"}]}
    step.update(subject="Case {{ case.id }}", body="<p>b</p>")
    postroom.apply({**graph_records(ms, **account), **case_type_with(step)})
    case = postroom.cases.create("A-B-C")
    run_agent(postroom)
    return postroom.cases.get(case.id)


def send_documents(postroom: Postroom, files: dict[str, bytes]) -> OutboxEntry:
    """A case whose step sends its attachments; the agent runs once."""
    postroom.apply(
        case_type_with(
            {
                "on": {"status": "Sent"},
                "to": [{"address": "owner@example.org"}],
                "subject": "Documents",
                "body": "<p>Attached.</p>",
                "include_attachments": True,
            }
        )
    )
    case = postroom.cases.create("A-B-C")
    for name, content in files.items():
        postroom.cases.attach(case.id, name=name, content=content)
    postroom.cases.set_status(case.id, "Sent")
    run_agent(postroom)
    [entry] = postroom.outbox()
    return entry


def test_emails_go_out_with_one_token(database_url: str, ms: FakeMicrosoft) -> None:
    with graph_postroom(database_url, ms) as postroom:
        ids = [
            postroom.send(
                to=[f"to{i}@example.org"],
                cc=["cc@example.org"],
                bcc=["audit@example.org"],
                subject=f"Notice {i} ✓",
                body=f"<p>Hello {i}</p>",
            )
            for i in range(5)
        ]
        run_agent(postroom)
        entries = [postroom.outbox_entry(i) for i in ids]
    assert [e.status for e in entries] == [OutboxStatus.SENT] * 5
    assert ms.token_requests == 1  # cached and shared by every send
    assert len(ms.sent) == 5
    by_id = {s.message["internetMessageId"]: s for s in ms.sent}
    sent = by_id[entries[0].message_id]
    message = sent.message
    assert sent.mailbox == MAILBOX
    assert sent.save_to_sent_items is True
    assert message["subject"] == "Notice 0 ✓"
    assert message["body"]["contentType"] == "HTML"
    assert "<p>Hello 0</p>" in message["body"]["content"]
    assert message["from"]["emailAddress"] == {
        "address": MAILBOX,
        "name": "Contoso Notifications",
    }
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == ["to0@example.org"]
    assert [r["emailAddress"]["address"] for r in message["ccRecipients"]] == ["cc@example.org"]
    assert [r["emailAddress"]["address"] for r in message["bccRecipients"]] == ["audit@example.org"]
    assert message["replyTo"][0]["emailAddress"]["address"] == "team@contoso.example"


def test_case_email_is_attached_with_its_x_headers(tmp_path: Path, ms: FakeMicrosoft) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with graph_postroom(url, ms) as postroom:
        case = case_created_through(postroom, ms, save_to_sent_items=False)
    [sent] = ms.sent
    assert sent.save_to_sent_items is False
    assert {"name": "X-Postroom-Case", "value": case.id} in sent.message["internetMessageHeaders"]
    assert [a.name for a in case.attachments] == [f"email-{1}.eml"]
    assert any(h.action == "email-sent" for h in case.history)


def test_expired_token_is_fetched_again_before_use(tmp_path: Path, ms: FakeMicrosoft) -> None:
    now = [1_000.0]
    tokens = TokenCache(allowed_hosts={"127.0.0.1"}, clock=lambda: now[0])
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(url, allowed_endpoint_hosts="127.0.0.1")
    transports = Transports(allowed_hosts={"127.0.0.1"}, tokens=tokens)
    with Postroom(settings, transport_factory=transports) as postroom:
        postroom.apply(graph_records(ms))
        postroom.send(to=["a@example.org"], subject="1", body="<p>1</p>")
        run_agent(postroom)
        now[0] += 3000  # still usable: more than five minutes left of the hour
        postroom.send(to=["a@example.org"], subject="2", body="<p>2</p>")
        run_agent(postroom)
        assert ms.token_requests == 1
        now[0] += 400  # within five minutes of expiry: fetched again, no 401 needed
        postroom.send(to=["a@example.org"], subject="3", body="<p>3</p>")
        run_agent(postroom)
    assert ms.token_requests == 2
    assert len(ms.sent) == 3
    assert graph_errors(ms, 401) == 0


def test_rejected_token_is_refreshed_exactly_once(tmp_path: Path, ms: FakeMicrosoft) -> None:
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        postroom.send(to=["a@example.org"], subject="first", body="<p>1</p>")
        run_agent(postroom)
        ms.expire_all_tokens()  # revoked early: Graph answers 401
        for i in range(6):
            postroom.send(to=[f"b{i}@example.org"], subject="more", body="<p>2</p>")
        run_agent(postroom)
        assert {e.status for e in postroom.outbox()} == {OutboxStatus.SENT}
    assert ms.token_requests == 2  # however many sends saw the 401
    assert 1 <= graph_errors(ms, 401) <= 4  # at most one per connection in flight
    assert len(ms.sent) == 7


def test_wrong_secret_holds_the_account_until_fixed(database_url: str, ms: FakeMicrosoft) -> None:
    # The hold's next check is an hour away: with the suite's zero backoff a heartbeat
    # would queue the held emails again at once, which is a later test's subject.
    hour = {"backoff_base": 3600.0, "backoff_max": 3600.0}
    with graph_postroom(database_url, ms, secret="wrong", **hour) as postroom:
        ids = [postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>") for _ in range(3)]
        run_agent(postroom)
        entries = [postroom.outbox_entry(i) for i in ids]
        assert {e.status for e in entries} == {OutboxStatus.HELD}
        assert {e.hold for e in entries} == {"account"}
        assert {e.attempts for e in entries} == {0}  # waiting is not failing
        assert "AADSTS7000215" in (entries[0].last_error or "")
        assert "not its Secret ID" in (entries[0].last_error or "")
        [hold] = postroom.holds()
        assert hold.account == "Default"
        assert "AADSTS7000215" in hold.reason
        assert ms.token_requests == 1  # one refusal, not one per email

        # A new email for a held account waits without asking the identity provider.
        postroom.send(to=["c@example.org"], subject="later", body="<p>b</p>")
        run_agent(postroom)
        assert ms.token_requests == 1
        assert postroom.outbox_counts()[OutboxStatus.HELD] == 4

        report = postroom.apply(graph_records(ms))  # the right secret
        assert any("hold lifted, 4 held emails" in w for w in report.warnings)
        run_agent(postroom)
        assert postroom.outbox_counts()[OutboxStatus.SENT] == 4
        assert postroom.holds() == []
    assert len(ms.sent) == 4


def test_held_account_is_checked_again_by_the_agent(tmp_path: Path, ms: FakeMicrosoft) -> None:
    # Holds are re-checked on the heartbeat once their delay passes (zero in tests).
    url = f"sqlite:///{tmp_path / 'p.db'}"
    tokens = TokenCache(allowed_hosts={"127.0.0.1"}, refusal_ttl=0)
    transports = Transports(allowed_hosts={"127.0.0.1"}, tokens=tokens)
    # The first agent never beats, so that nothing checks the hold before it is seen.
    quiet = make_settings(url, allowed_endpoint_hosts="127.0.0.1", heartbeat_interval=300)
    with Postroom(quiet, transport_factory=transports) as postroom:
        postroom.apply(graph_records(ms, secret="wrong"))
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        assert postroom.outbox_entry(outbox_id).status is OutboxStatus.HELD
    ms.apps["app-1"].secret = "wrong"  # the administrator fixes the app instead

    settings = make_settings(url, allowed_endpoint_hosts="127.0.0.1")
    with Postroom(settings, transport_factory=transports) as postroom:

        async def until_sent() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(postroom.agent().run(stop=stop))
            for _ in range(200):
                await asyncio.sleep(0.05)
                if postroom.outbox_entry(outbox_id).status is OutboxStatus.SENT:
                    break
            stop.set()
            await task

        asyncio.run(until_sent())
        assert postroom.outbox_entry(outbox_id).status is OutboxStatus.SENT
        assert postroom.holds() == []


def test_429_waits_as_asked_without_counting(tmp_path: Path, ms: FakeMicrosoft) -> None:
    ms.script("sendMail", (429, {"Retry-After": "1"}, b'{"error":{"code":"TooManyRequests"}}'))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 1
    posts = [t for t, method, path, _ in ms.requests if path.endswith("/sendMail")]
    assert len(posts) == 2
    assert posts[1] - posts[0] >= 1.0


def test_long_retry_after_returns_the_email_to_the_outbox(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.script("sendMail", (503, {"Retry-After": "120"}, b""))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.RETRY
    assert entry.attempts == 0  # not counted
    assert 100 < (entry.next_attempt_at - entry.updated_at).total_seconds() <= 121
    assert "throttling" in (entry.last_error or "")


def test_503_is_retried(tmp_path: Path, ms: FakeMicrosoft) -> None:
    unavailable = json.dumps({"error": {"code": "ServiceUnavailable", "message": "busy"}})
    ms.script("sendMail", (503, {"Content-Type": "application/json"}, unavailable.encode()))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)  # backoff is zero in tests: the retry comes in the same run
        entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    statuses = [status for *_, path, status in ms.requests if path.endswith("/sendMail")]
    assert statuses == [503, 202]


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ("unknown mailbox", 404, "ErrorInvalidUser"),
        ("inactive mailbox", 404, "inactive, soft-deleted or on-premises"),
        ("no Mail.Send", 403, "grant it the Mail.Send application permission"),
        ("bad request", 400, "ErrorInvalidRecipients"),
    ],
)
def test_refusals_fail_with_an_explanation(
    tmp_path: Path, ms: FakeMicrosoft, setup: str, code: int, words: str
) -> None:
    if setup == "unknown mailbox":
        ms.mailboxes.clear()
    elif setup == "inactive mailbox":
        ms.mailboxes[MAILBOX] = "inactive"
    elif setup == "no Mail.Send":
        ms.apps["app-1"].roles = []
    else:
        refusal = {"error": {"code": "ErrorInvalidRecipients", "message": "not valid"}}
        ms.script("sendMail", (400, {}, json.dumps(refusal).encode()))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == 1
    assert entry.last_code == code
    assert words in (entry.last_error or "")
    assert ms.sent == []


def test_large_attachments_go_through_an_upload_session(tmp_path: Path, ms: FakeMicrosoft) -> None:
    big = bytes(range(256)) * (14 * 1024)  # 3.5 MiB: over the 3 MB limit
    small = b"%PDF-1.4 small"
    ms.apps["app-1"].roles = ["Mail.Send", "Mail.ReadWrite"]  # drafts need both
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        entry = send_documents(postroom, {"scan.bin": big, "note.pdf": small})
    assert entry.status is OutboxStatus.SENT
    [sent] = ms.sent
    assert sent.via == "draft"
    assert sent.attachments == {"scan.bin": big, "note.pdf": small}
    chunks = ms.upload_chunks
    assert len(chunks) == 2  # 3.2 MB, then the rest
    assert chunks[0][0] == 0
    assert chunks[1] == (chunks[0][1] + 1, len(big) - 1, len(big))
    assert ms.upload_auth_headers == 0  # the upload URL carries its own authorisation
    assert ms.drafts == {}


def test_never_more_than_four_requests_per_mailbox(tmp_path: Path, ms: FakeMicrosoft) -> None:
    ms.graph_delay = 0.05
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with graph_postroom(url, ms, connections_per_account=12) as postroom:
        for i in range(24):
            postroom.send(to=[f"r{i}@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        assert postroom.outbox_counts()[OutboxStatus.SENT] == 24
    assert ms.max_in_flight[MAILBOX] == 4  # reached, never exceeded


@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_no_answer_after_sending_is_an_unknown_outcome(
    tmp_path: Path, ms: FakeMicrosoft, policy: str
) -> None:
    ms.script("sendMail", ("hang", 2.0))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with graph_postroom(url, ms, http_timeout=0.5) as postroom:
        case = case_created_through(postroom, ms, on_unknown_outcome=policy)
        [entry] = postroom.outbox()
        history = case.history
        [unknown] = [h for h in history if h.action == "email-outcome-unknown"]
        assert "may have been sent" in unknown.detail
        if policy == "retry":
            # Sent again at once (backoff is zero in tests): a duplicate is possible.
            assert entry.status is OutboxStatus.SENT
            assert entry.attempts == 2
        else:
            assert entry.status is OutboxStatus.HELD
            assert entry.hold == "outcome"
            assert "check the mailbox's Sent Items" in (entry.last_error or "")
            run_agent(postroom)  # a held email waits for a person
            assert postroom.outbox_entry(entry.id).status is OutboxStatus.HELD
            postroom.retry(entry.id)
        run_agent(postroom)
        assert postroom.outbox_entry(entry.id).status is OutboxStatus.SENT


def test_reference_scenario_sends_the_mortgage_email_through_graph(
    tmp_path: Path, ms: FakeMicrosoft, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = Path(__file__).parent.parent / "examples"
    (tmp_path / "ca.pem").write_text(ca_pem)
    for env, value in {
        "POSTROOM_DEMO_SMTP_PASSWORD": "unused-here",
        "POSTROOM_DEMO_CA_FILE": str(tmp_path / "ca.pem"),
        "AZURE_TENANT_ID": "contoso-tenant",
        "AZURE_CLIENT_ID": "app-1",
        "AZURE_CLIENT_SECRET": "s3cret-value",
        "POSTROOM_TOKEN_ENDPOINT": ms.token_endpoint,
        "POSTROOM_GRAPH_URL": ms.url,
    }.items():
        monkeypatch.setenv(env, value)
    ms.mailboxes["mortgages@myorg.example"] = "active"
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}", allowed_endpoint_hosts="127.0.0.1")
    with Postroom(settings) as postroom:
        postroom.apply(examples / "mortgage.yaml")
        report = postroom.apply(examples / "mortgage-graph.yaml")
        assert ("account", "MyOrg-Mortgage-Work", "updated") in report.changes
        assert report.warnings == []
        case = postroom.cases.create(
            "MyOrg-Mortgage-Work-MortgageRequest",
            data={"applicant": "Bob", "amount": 250000, "customer_email": "bob@example.org"},
            operator="alice",
        )
        run_agent(postroom)
        case = postroom.cases.get(case.id)
        [entry] = postroom.outbox()
    assert entry.status is OutboxStatus.SENT
    [sent] = ms.sent
    assert sent.mailbox == "mortgages@myorg.example"
    assert sent.message["toRecipients"] == [
        {"emailAddress": {"address": "carol.manager@example.com", "name": "Carol Case-Manager"}}
    ]
    assert sent.message["subject"] == f"Mortgage request {case.id} created by Alice Applicant-Clerk"
    assert "Bob" in sent.message["body"]["content"]
    assert [a.name for a in case.attachments] == [f"email-{entry.id}.eml"]
    [history] = [h for h in case.history if h.action == "email-sent"]
    assert "from account MyOrg-Mortgage-Work" in history.detail


def test_large_message_without_mail_readwrite_says_so(tmp_path: Path, ms: FakeMicrosoft) -> None:
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        entry = send_documents(postroom, {"scan.bin": b"x" * (3 * 1024 * 1024)})
    assert entry.status is OutboxStatus.FAILED
    assert entry.last_code == 403
    assert "Mail.ReadWrite" in (entry.last_error or "")
    assert ms.sent == []


def test_a_lapsed_upload_url_retries_without_holding_the_account(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.apps["app-1"].roles = ["Mail.Send", "Mail.ReadWrite"]
    ms.script("upload", (401, {}, b'{"error":{"code":"InvalidAuthenticationToken"}}'))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        entry = send_documents(postroom, {"scan.bin": b"y" * (3 * 1024 * 1024)})
        assert postroom.holds() == []
    assert entry.status is OutboxStatus.SENT
    assert entry.attempts == 2
    assert len(ms.deleted_drafts) == 1  # the first draft, whose upload lapsed
    [sent] = ms.sent
    assert sent.attachments == {"scan.bin": b"y" * (3 * 1024 * 1024)}


def test_a_long_pause_sends_the_mailbox_s_emails_back_without_blocking(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.script("sendMail", (429, {"Retry-After": "99999999999999"}, b""))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with graph_postroom(url, ms, connections_per_account=1) as postroom:
        ids = [
            postroom.send(to=["a@example.org"], subject=str(i), body="<p>b</p>") for i in range(3)
        ]
        run_agent(postroom)  # returns at once: nothing waits out the pause in the agent
        entries = [postroom.outbox_entry(i) for i in ids]
    assert {e.status for e in entries} == {OutboxStatus.RETRY}
    assert {e.attempts for e in entries} == {0}
    for e in entries:
        wait = (e.next_attempt_at - e.updated_at).total_seconds()
        assert 3500 < wait <= 3601  # an absurd Retry-After is capped at an hour
    assert sum(1 for *_, path, _ in ms.requests if path.endswith("/sendMail")) == 1


def test_the_identity_provider_asking_to_wait_is_not_a_failure(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.script("token", (429, {"Retry-After": "30", "Content-Type": "text/html"}, b"<p>busy</p>"))
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as postroom:
        outbox_id = postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        entry = postroom.outbox_entry(outbox_id)
        assert postroom.holds() == []
    assert entry.status is OutboxStatus.RETRY
    assert entry.attempts == 0
    assert 25 < (entry.next_attempt_at - entry.updated_at).total_seconds() <= 31


def test_a_mailbox_refusal_stops_the_batch_at_the_first_email(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.mailboxes.clear()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with graph_postroom(url, ms, connections_per_account=1) as postroom:
        for i in range(5):
            postroom.send(to=[f"r{i}@example.org"], subject="s", body="<p>b</p>")
        run_agent(postroom)
        assert postroom.outbox_counts()[OutboxStatus.FAILED] == 5
    assert sum(1 for *_, path, _ in ms.requests if path.endswith("/sendMail")) == 1
