"""Inbound mail end to end: a case's email sent, the customer's reply in a real Dovecot,
read by a running listener (IDLE) or by one ``postroom inbound poll``, and threaded
onto the case, whose ``on: email_received`` step notifies the Case Manager.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.inbound.listeners import InboundListeners
from postroom.inbound.models import InboundStatus, ServerState
from tests.chaoskit import agent_forever, fleet, process_env, report
from tests.conftest import TEST_KEY, make_settings
from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture, message, wait_until
from tests.fakes import ServerInfo, free_port, smtp_server

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(300)]

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()

CLASS = "MyOrg-Mortgage-Work-MortgageRequest"
ACCOUNT = "MyOrg-Mortgage-Work"
REPLIED = "Open-CustomerReplied"
# The acceptance target is 2 s through IDLE; the bound here is what a loaded 2-core CI
# machine needs to never fail on time alone. The latency measured is printed and kept.
REPLY_LIMIT = 15.0


def records(mailbox: Mailbox, smtp: ServerInfo) -> dict[str, Any]:
    """The Mortgage example, its account reading the test's Dovecot mailbox."""
    account = {**mailbox.account_yaml(ACCOUNT), "port": smtp.port}
    return {
        "operators": [
            {"id": "carol", "name": "Carol Manager", "email": "carol@example.com"},
            {
                "id": "alice",
                "name": "Alice Clerk",
                "email": "alice@example.com",
                "reports_to": "carol",
            },
        ],
        "accounts": [account],
        "case_types": [
            {
                "class": CLASS,
                "class_group": ACCOUNT,
                "id_prefix": "M-",
                "parties": {"CaseManager": "creator.reports_to", "Customer": "data.customer"},
                "steps": [
                    {
                        "name": "Notify the case manager",
                        "on": "created",
                        "to": [{"party": "CaseManager"}],
                        "subject": "Mortgage request {{ case.id }} created",
                        "body": "<p>A new request.</p>",
                    },
                    {
                        "name": "The customer answered",
                        "on": "email_received",
                        "to": [{"party": "CaseManager"}],
                        "subject": "The customer replied on {{ case.id }}",
                        "body": "<p>Read the reply on the case.</p>",
                        "set_status": REPLIED,
                    },
                ],
            }
        ],
    }


def sent_case(pr: Postroom) -> tuple[str, str]:
    """A new Mortgage case whose creation email went out: its id and that Message-ID."""
    case = pr.cases.create(CLASS, data={"customer": "customer@example.org"}, operator="alice")
    asyncio.run(pr.agent().run(until_idle=True))
    [email] = pr.outbox(case_id=case.id)
    assert email.status == "sent", email
    return case.id, email.message_id.strip("<>")


def reply_to(message_id: str, case_id: str) -> bytes:
    return message(
        f"Re: Mortgage request {case_id} created",
        body="Yes, please go ahead.\r\n\r\n> A new request.",
        In_Reply_To=f"<{message_id}>",
        References=f"<{message_id}>",
    )


@contextmanager
def listening(pr: Postroom) -> Iterator[InboundListeners]:
    """The listeners of one agent, running in a thread of their own until the block ends."""
    listeners = pr.inbound_listeners()
    started = threading.Event()
    handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        handles.append((asyncio.get_running_loop(), stop))
        started.set()
        await listeners.run(stop=stop)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield listeners
    finally:
        loop, stop = handles[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        assert not thread.is_alive(), "the listeners did not stop"


def polled(pr: Postroom) -> bool:
    """Whether the account's listener finished a round (it is waiting for mail now)."""
    return any(m.last_poll_at is not None for m in pr.inbound_mailboxes())


def assert_threaded(pr: Postroom, case_id: str, received_id: int) -> None:
    case = pr.cases.get(case_id)
    assert case.status == REPLIED
    assert any(a.name.endswith(".eml") for a in case.attachments), case.attachments
    notices = [e for e in pr.outbox(case_id=case_id) if e.subject.startswith("The customer")]
    assert len(notices) == 1
    assert [r.address for r in notices[0].recipients] == ["carol@example.com"]
    received = pr.received_message(received_id)
    assert received.status is InboundStatus.MATCHED
    assert received.server_state is ServerState.DONE


def test_a_running_listener_threads_a_reply_onto_its_case(mailbox: Mailbox, tmp_path: Path) -> None:
    with smtp_server() as smtp, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply(records(mailbox, smtp))
        case_id, sent_id = sent_case(pr)
        with listening(pr):
            wait_until(lambda: polled(pr), limit=30, what="the listener's first round")
            uid = mailbox.append(reply_to(sent_id, case_id))
            appended = time.monotonic()
            wait_until(
                lambda: bool(pr.received(case_id=case_id)),
                limit=REPLY_LIMIT,
                what="the reply threaded onto the case",
            )
            latency = time.monotonic() - appended
            wait_until(lambda: "\\Seen" in mailbox.flags(uid), limit=30, what="\\Seen")
        report("inbound.txt", "reply latency", f"reply on its case {latency:.2f} s after APPEND")
        [received] = pr.received(case_id=case_id)
        assert received.in_reply_to == sent_id
        assert "go ahead" in received.text
        assert_threaded(pr, case_id, received.id)


def test_inbound_poll_alone_does_the_same(mailbox: Mailbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with smtp_server() as smtp, Postroom(make_settings(url)) as pr:
        pr.apply(records(mailbox, smtp))
        case_id, sent_id = sent_case(pr)
        uid = mailbox.append(reply_to(sent_id, case_id))
        runner = CliRunner()
        env = {"POSTROOM_SECRET_KEY": TEST_KEY}
        result = runner.invoke(app, ["-d", url, "inbound", "poll", ACCOUNT], env=env)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert "read: 1" in lines
        assert "matched: 1" in lines
        assert "settled: 1" in lines
        assert "\\Seen" in mailbox.flags(uid)
        [received] = pr.received(case_id=case_id)
        assert_threaded(pr, case_id, received.id)
        shown = runner.invoke(app, ["-d", url, "cases", "show", case_id], env=env)
        assert shown.exit_code == 0, shown.output
        talk = shown.output[shown.output.index("conversation") :]
        sent_at = talk.index(f"Mortgage request {case_id} created")
        assert talk.index(f"Re: Mortgage request {case_id} created") > sent_at  # time order
        assert "received" in talk
        # Again: nothing new, nothing re-read.
        again = runner.invoke(app, ["-d", url, "inbound", "poll", ACCOUNT], env=env)
        assert again.exit_code == 0
        assert "read: 0" in again.output.splitlines()


def test_a_restart_neither_rereads_nor_skips(mailbox: Mailbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with smtp_server() as smtp, Postroom(make_settings(url)) as pr:
        pr.apply(records(mailbox, smtp))
        mailbox.append_many([message(f"first {n}") for n in range(3)])
        assert pr.poll_inbound(ACCOUNT).read == 3
        # Flags cleared behind Postroom's back: the cursor, not \Seen, says what was read.
        with mailbox.client() as c:
            c.remove_flags(c.search("ALL"), [b"\\Seen"])
        mailbox.append_many([message(f"then {n}") for n in range(2)])
    with Postroom(make_settings(url)) as pr:  # another process, as after a restart
        second = pr.poll_inbound(ACCOUNT)
        assert (second.read, second.duplicates) == (2, 0)
        assert len(pr.received(limit=100)) == 5


def test_a_new_uidvalidity_ingests_nothing_twice(mailbox: Mailbox, tmp_path: Path) -> None:
    with smtp_server() as smtp, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply(records(mailbox, smtp))
        mailbox.append_many([message(f"before {n}") for n in range(4)])
        assert pr.poll_inbound(ACCOUNT).read == 4
        mailbox.change_uidvalidity()
        mailbox.append(message("after"))
        resync = pr.poll_inbound(ACCOUNT)
        # The folder is read again from the start: the four known ones are duplicates.
        assert (resync.read, resync.duplicates) == (5, 4)
        assert len(pr.received(limit=100)) == 5
        assert all("\\Seen" in mailbox.flags(uid) for uid in mailbox.uids())


def test_an_account_without_inbound_or_unknown_is_refused(mailbox: Mailbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with smtp_server() as smtp, Postroom(make_settings(url)) as pr:
        plain = {k: v for k, v in mailbox.account_yaml("Plain").items() if k != "inbound"}
        pr.apply({"accounts": [plain, {**mailbox.account_yaml("Wrong", password="nope"),
                                        "port": smtp.port}]})  # fmt: skip
    runner = CliRunner()
    env = {"POSTROOM_SECRET_KEY": TEST_KEY}
    for account, code, words in (
        ("Plain", 2, "has no inbound settings"),
        ("Nobody", 3, "Nobody"),
        ("Wrong", 1, ""),
    ):
        result = runner.invoke(app, ["-d", url, "inbound", "poll", account], env=env)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert words in result.output
        assert "nope" not in result.output  # the refused password is never shown


@pytest.mark.postgres
@pytest.mark.slow
def test_two_agents_one_listener_and_the_other_takes_over_when_it_is_killed(
    mailbox: Mailbox, postgres_url: str, tmp_path: Path
) -> None:
    """Two ``postroom agent run`` processes on PostgreSQL, one mailbox, a 3 s lease."""
    lease = 3.0
    with Postroom(make_settings(postgres_url)) as pr:
        pr.apply({"accounts": [mailbox.account_yaml("Desk", poll_seconds=1)]})

        def owner() -> str | None:
            rows = pr.inbound_mailboxes()
            return rows[0].lease_owner if rows else None

        env = process_env(postgres_url, lease_seconds=lease, heartbeat_interval=0.5)
        with fleet(agent_forever(), env, tmp_path) as agents:
            agents.start(0)
            agents.start(1)
            mailbox.append(message("first"))
            wait_until(lambda: len(pr.received()) == 1, limit=60, what="the first message")
            first = owner()
            assert first is not None
            # For two whole leases the mailbox stays with one listener: it renews in time.
            watch_until = time.monotonic() + 2 * lease
            while time.monotonic() < watch_until:
                assert owner() == first
                time.sleep(0.1)
            slots = {proc.pid: slot for slot, proc in agents.procs.items()}
            victim = slots[int(first.split(":")[1])]
            agents.kill(victim)
            killed = time.monotonic()
            mailbox.append(message("second"))
            wait_until(lambda: len(pr.received()) == 2, limit=90, what="the other taking over")
            took = time.monotonic() - killed
            second = owner()
            assert second is not None
            assert second != first
            assert slots[int(second.split(":")[1])] == 1 - victim
            assert agents.procs[1 - victim].poll() is None, "the survivor exited"
        report("inbound.txt", "takeover", f"lease {lease} s: taken over {took:.1f} s after kill")
        assert sorted(m.subject for m in pr.received()) == ["first", "second"]


@pytest.mark.slow  # the put-right account is taken up at the next re-read (30 s)
@pytest.mark.parametrize("trouble", ["refused login", "server down"])
def test_a_listener_in_trouble_says_so_once_notes_it_and_recovers(
    mailbox: Mailbox, tmp_path: Path, caplog: pytest.LogCaptureFixture, trouble: str
) -> None:
    wrong = (
        {"password": "not-the-password-77"}
        if trouble == "refused login"
        else {"port": free_port(), "security": "none", "allow_insecure_auth": True}
    )
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [mailbox.account_yaml("Desk", **wrong)]})

        def noted() -> list[str | None]:
            return [m.last_error for m in pr.inbound_mailboxes()]

        with caplog.at_level(logging.INFO, logger="postroom.inbound"), listening(pr) as agent:
            wait_until(lambda: any(noted()), limit=60, what="the error on the mailbox's row")
            first_poll = pr.inbound_mailboxes()[0].last_poll_at
            wait_until(
                lambda: pr.inbound_mailboxes()[0].last_poll_at != first_poll,
                limit=60,
                what="a second try after backoff",
            )
            assert agent.accounts == ["Desk"]
            # Put right: the listener picks up the change and reads the mailbox.
            pr.apply({"accounts": [mailbox.account_yaml("Desk")]})
            uid = mailbox.append(message("now it works"))
            wait_until(lambda: "\\Seen" in mailbox.flags(uid), limit=90, what="reading again")
            wait_until(lambda: noted() == [None], limit=30, what="the error cleared")
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([s for s in said if "retrying" in s]) == 1, said
    assert all("not-the-password" not in s for s in said)
    assert all("not-the-password" not in r.getMessage() for r in caplog.records)
