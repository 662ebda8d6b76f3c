"""The inbound listener: mailbox leases and cursors, rounds against a mail source."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import OperationalError

from postroom import Postroom
from postroom.accounts import EmailAccount
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.inbound import mailboxes
from postroom.inbound.listener import ListenerConfig, MailboxListener, PollReport
from postroom.inbound.listeners import InboundListeners, ListenerParts
from postroom.inbound.mailboxes import LeaseLostError
from postroom.inbound.models import Cursor, MailboxRef
from tests.inboundkit import KeyIngest, KeyStore, MemorySource

BOX = MailboxRef("support", "INBOX")


def test_one_owner_at_a_time_until_the_lease_lapses(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        assert mailboxes.acquire(conn, BOX, owner="a", lease=30)
        assert mailboxes.acquire(conn, BOX, owner="a", lease=30)  # kept by its owner
        assert not mailboxes.acquire(conn, BOX, owner="b", lease=30)
        later = utcnow() + timedelta(seconds=31)
        assert mailboxes.acquire(conn, BOX, owner="b", lease=30, now=later)
        assert not mailboxes.renew(conn, BOX.key, owner="a", lease=30)
        assert mailboxes.renew(conn, BOX.key, owner="b", lease=30)
        [row] = mailboxes.info(conn)
    assert (row.account, row.folder, row.lease_owner) == ("support", "INBOX", "b")


def test_a_released_lease_is_free_at_once(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        assert mailboxes.acquire(conn, BOX, owner="a", lease=30)
        assert not mailboxes.release(conn, BOX.key, owner="b")
        assert mailboxes.release(conn, BOX.key, owner="a")
        assert mailboxes.acquire(conn, BOX, owner="b", lease=30)


def test_the_cursor_is_saved_only_under_the_lease(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        assert mailboxes.load_cursor(conn, BOX.key) == Cursor()
        assert mailboxes.acquire(conn, BOX, owner="a", lease=30)
        mailboxes.save_cursor(conn, BOX.key, Cursor("7", "41"), owner="a")
    with pytest.raises(LeaseLostError, match="another listener"):
        with postroom.engine.begin() as conn:
            mailboxes.save_cursor(conn, BOX.key, Cursor("7", "99"), owner="b")
    with postroom.engine.connect() as conn:
        assert mailboxes.load_cursor(conn, BOX.key) == Cursor("7", "41")


def test_poll_time_and_error_are_kept_for_operators(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        mailboxes.ensure(conn, BOX)
        mailboxes.note_poll(conn, BOX.key, error="x" * 2000)
        [row] = mailboxes.info(conn, BOX.key)
        assert row.last_poll_at is not None
        assert row.last_error == "x" * mailboxes.MAX_ERROR
        mailboxes.note_poll(conn, BOX.key, error=None)
        assert mailboxes.info(conn, BOX.key)[0].last_error is None


@pytest.mark.postgres
def test_racing_agents_never_both_hold_a_mailbox(postgres_url: str) -> None:
    """Eight threads, each its own connection, race for one mailbox twenty times."""
    with Postroom.open(postgres_url, secret_key="test-secret-key-0123456789abcdef"):
        pass  # the schema
    engine = create_engine(postgres_url, pool_size=8)
    try:
        for race in range(20):
            assert _race(engine, MailboxRef("acc", f"F{race}")) == 1
    finally:
        engine.dispose()


def _race(engine: Engine, ref: MailboxRef) -> int:
    """How many of eight threads starting at once took the mailbox's lease."""
    winners: list[str] = []
    start = threading.Barrier(8, timeout=30)

    def contend(name: str) -> None:
        start.wait()
        with engine.begin() as conn:
            if mailboxes.acquire(conn, ref, owner=name, lease=30):
                winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"agent{i}",)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    return len(winners)


# --- rounds, against a source held in memory -------------------------------------------


def _listener(pr: Postroom, owner: str, **config: float) -> MailboxListener:
    return MailboxListener(
        engine=pr.engine,
        ref=BOX,
        owner=owner,
        ingestor=KeyIngest(pr.engine),
        store=KeyStore(),
        config=ListenerConfig(**{"lease_seconds": 30.0, "batch": 2, **config}),  # type: ignore[arg-type]
        deliver=lambda ids: None,
    )


def _rows(pr: Postroom) -> list[tuple[str, str]]:
    t = tables.inbound_messages
    with pr.engine.connect() as conn:
        return [(r.dedupe_key, r.server_state) for r in conn.execute(select(t).order_by(t.c.id))]


def test_a_round_ingests_settles_and_moves_the_cursor(postroom: Postroom) -> None:
    source = MemorySource()
    for n in range(5):
        source.add(f"m{n}".encode())
    listener = _listener(postroom, "a")

    async def two_rounds() -> tuple[PollReport, PollReport]:
        assert await listener.acquire()
        await source.open()
        return await listener.round(source), await listener.round(source)

    first, second = asyncio.run(two_rounds())
    assert (first.read, first.unmatched, first.settled) == (5, 5, 5)
    assert (second.read, second.settled) == (0, 0)  # nothing re-read
    assert source.seen == {1, 2, 3, 4, 5}
    assert _rows(postroom) == [(f"m{n}", "done") for n in range(5)]
    with postroom.engine.connect() as conn:
        assert mailboxes.load_cursor(conn, BOX.key) == Cursor("1", "5")


def test_what_a_crash_left_unsettled_is_settled_next_round(postroom: Postroom) -> None:
    source = MemorySource()
    for n in range(3):
        source.add(f"m{n}".encode())

    class Crash(Exception):
        pass

    async def crashing_settle(keys: object) -> None:
        raise Crash

    async def crash_then_round() -> PollReport:
        listener = _listener(postroom, "a")
        assert await listener.acquire()
        await source.open()
        settle = source.settle
        source.settle = crashing_settle  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await listener.round(source)
        source.settle = settle  # type: ignore[method-assign]
        return await _listener(postroom, "a").round(source)

    report = asyncio.run(crash_then_round())
    # The crash came after the first batch of two was committed: only the third is read
    # again (the cursor was saved with each message), the first two are settled.
    assert (report.read, report.duplicates, report.settled) == (1, 0, 3)
    assert source.seen == {1, 2, 3}
    assert [state for _, state in _rows(postroom)] == ["done"] * 3


def test_a_listener_whose_lease_was_taken_commits_nothing(postroom: Postroom) -> None:
    source = MemorySource()
    source.add(b"m0")
    listener = _listener(postroom, "a")

    async def run() -> None:
        assert await listener.acquire()
        with postroom.engine.begin() as conn:  # a's lease lapsed; b took the mailbox
            later = utcnow() + timedelta(seconds=60)
            assert mailboxes.acquire(conn, BOX, owner="b", lease=30, now=later)
        await source.open()
        with pytest.raises(LeaseLostError):
            await listener.round(source)

    asyncio.run(run())
    assert _rows(postroom) == []
    assert source.seen == set()


def test_a_wait_ends_when_mail_arrives_and_renews_the_lease(postroom: Postroom) -> None:
    source = MemorySource()
    listener = _listener(postroom, "a", lease_seconds=3.0, poll_seconds=60.0)

    async def run() -> float:
        assert await listener.acquire()
        await source.open()
        assert source.arrived is not None
        asyncio.get_running_loop().call_later(0.3, source.arrived.set)
        began = time.monotonic()
        await listener.wait(source, asyncio.Event())
        return time.monotonic() - began

    took = asyncio.run(run())
    assert took < 30  # woken by the arrival, not by the 60 s poll
    with postroom.engine.connect() as conn:
        [row] = mailboxes.info(conn, BOX.key)
    assert row.lease_owner == "a"


def _inbound_account() -> EmailAccount:
    return EmailAccount.model_validate(
        {
            "name": "support",
            "address": "support@example.com",
            "host": "127.0.0.1",
            "port": 25,
            "security": "none",
            "inbound": {"host": "127.0.0.1", "password": "pw", "poll_seconds": 1},
        }
    )


def test_two_agents_one_reader_and_the_other_takes_over(postroom: Postroom) -> None:
    """Two agents' listeners on one mailbox: one reads; when it stops, the other does."""
    messages: dict[int, bytes] = {}
    sources = {"a": MemorySource(messages), "b": MemorySource(messages)}

    def workers(owner: str) -> InboundListeners:
        def make(account: EmailAccount) -> ListenerParts:
            return ListenerParts(
                _listener(postroom, owner, lease_seconds=1.5, poll_seconds=1.0),
                lambda: sources[owner],
            )

        return InboundListeners(
            agent_id=owner, load_accounts=lambda: [_inbound_account()], make=make, refresh=0.5
        )

    async def run() -> None:
        stops = {"a": asyncio.Event(), "b": asyncio.Event()}
        a = asyncio.create_task(workers("a").run(stop=stops["a"]))
        await _until(lambda: sources["a"].fetches > 0, what="a reading")
        b = asyncio.create_task(workers("b").run(stop=stops["b"]))
        messages[1] = b"m1"
        await _until(lambda: sources["a"].seen == {1}, what="a ingesting")
        await asyncio.sleep(0)  # b had its chances: a renews well inside its lease
        assert sources["b"].fetches == 0
        stops["a"].set()
        await asyncio.wait_for(a, 30)
        messages[2] = b"m2"
        await _until(lambda: sources["b"].seen == {2}, what="b taking over")
        stops["b"].set()
        await asyncio.wait_for(b, 30)

    asyncio.run(run())
    assert [key for key, _ in _rows(postroom)] == ["m1", "m2"]


async def _until(check: Callable[[], bool], *, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"not within {limit:g} s: {what}"
        await asyncio.sleep(0.02)


def test_database_trouble_is_said_once_and_ridden_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Accounts unreadable three times: degraded, one warning; then working again."""
    failures = 3
    calls: list[int] = []

    def load() -> list[EmailAccount]:
        calls.append(1)
        if len(calls) <= failures:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return []

    listeners = InboundListeners(
        agent_id="a", load_accounts=load, make=lambda a: None,  # type: ignore[arg-type,return-value]
        refresh=0.05, retry_first=0.01, retry_cap=0.05,
    )  # fmt: skip
    seen: list[str] = []

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(listeners.run(stop=stop))
        await _until(lambda: len(calls) >= 2, what="a second try")
        seen.append(listeners.health.state)
        await _until(lambda: len(calls) > failures + 1, what="working again")
        seen.append(listeners.health.state)
        stop.set()
        await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.WARNING, logger="postroom.inbound"):
        asyncio.run(run())
    assert seen == ["degraded", "running"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "degraded" in w]) == 1, warnings
    assert any("answers again" in w for w in warnings)


def test_an_account_removed_or_changed_stops_or_restarts_its_listener(
    postroom: Postroom,
) -> None:
    source = MemorySource()
    accounts = [_inbound_account()]
    made: list[EmailAccount] = []

    def make(account: EmailAccount) -> ListenerParts:
        made.append(account)
        return ListenerParts(_listener(postroom, "a", poll_seconds=1.0), lambda: source)

    listeners = InboundListeners(
        agent_id="a", load_accounts=lambda: list(accounts), make=make, refresh=0.1
    )

    def owner() -> str | None:
        with postroom.engine.connect() as conn:
            rows = mailboxes.info(conn, BOX.key)
        return rows[0].lease_owner if rows else None

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(listeners.run(stop=stop))
        await _until(lambda: owner() == "a", what="the mailbox taken")
        changed = _inbound_account().model_copy(update={"display_name": "Support desk"})
        accounts[:] = [changed]
        await _until(lambda: len(made) == 2, what="a restart with the changed account")
        assert made[-1] == changed
        accounts.clear()
        await _until(lambda: listeners.accounts == [], what="the listener stopped")
        # Given back as the listener stops, not left to lapse (nothing else clears the
        # owner: a lapsed lease keeps its owner until another agent takes it).
        await _until(lambda: owner() is None, what="the mailbox given back")
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(run())


def test_the_real_ingest_is_fenced_by_the_lease(postroom: Postroom) -> None:
    """Postroom's own ingest, with a lease taken over: nothing of the message stays."""
    source = MemorySource()
    source.add(b"From: a@example.org\r\nMessage-ID: <fenced@example.org>\r\n\r\nhi\r\n")
    listener = MailboxListener(
        engine=postroom.engine,
        ref=BOX,
        owner="a",
        ingestor=postroom.ingestor,
        store=postroom.inbound_store,
        config=ListenerConfig(lease_seconds=30.0),
        deliver=postroom.deliver_now,
    )

    async def run() -> PollReport:
        assert await listener.acquire()
        with postroom.engine.begin() as conn:
            later = utcnow() + timedelta(seconds=60)
            assert mailboxes.acquire(conn, BOX, owner="b", lease=30, now=later)
        await source.open()
        with pytest.raises(LeaseLostError):
            await listener.round(source)
        with postroom.engine.begin() as conn:  # b lets go; a takes the mailbox back
            assert mailboxes.release(conn, BOX.key, owner="b")
        assert await listener.acquire()
        return await listener.round(source)

    report = asyncio.run(run())
    assert (report.read, report.unmatched, report.duplicates, report.settled) == (1, 1, 0, 1)
    assert len(_rows(postroom)) == 1


def test_a_throttled_mailbox_waits_as_long_as_the_service_asked() -> None:
    """Graph's Retry-After outlasts the listener's own backoff: the longer wait wins."""
    from postroom.agent.health import Backoff  # noqa: PLC0415
    from postroom.errors import ThrottledError, TransientDeliveryError  # noqa: PLC0415
    from postroom.inbound.listeners import _Spell  # noqa: PLC0415

    class Noting:
        notes: list[str | None] = []

        async def note(self, reason: str | None) -> None:
            self.notes.append(reason)

    listeners = InboundListeners(
        agent_id="a", load_accounts=list, make=lambda a: None,  # type: ignore[arg-type,return-value]
        retry_first=0.01, retry_cap=0.05,
    )  # fmt: skip
    spell = _Spell(backoff=Backoff(first=0.01, cap=0.05))  # its own waits stay short here

    async def delays() -> tuple[float, float, float]:
        busy = ThrottledError("throttled", retry_after=7.0)
        huge = ThrottledError("throttled", retry_after=10_000_000.0)
        down = TransientDeliveryError("connection refused")
        listener: Any = Noting()
        return (
            await listeners._trouble("support", listener, busy, spell),
            await listeners._trouble("support", listener, huge, spell),
            await listeners._trouble("support", listener, down, spell),
        )

    asked, capped, own = asyncio.run(delays())
    assert asked >= 7.0
    assert capped == 3600.0
    assert own <= 0.05  # a plain outage keeps the listener's own backoff
