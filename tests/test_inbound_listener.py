"""The inbound listener: mailbox leases and cursors, rounds against a mail source."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, create_engine

from postroom import Postroom
from postroom.db.types import utcnow
from postroom.inbound import mailboxes
from postroom.inbound.mailboxes import LeaseLostError
from postroom.inbound.models import Cursor, MailboxRef

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
