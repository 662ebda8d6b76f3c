"""A batch's outcomes written at once, the claim's prepared statement, and DATA's wire form.

Each on SQLite and PostgreSQL: every outcome kind is stored as its single-row write
stored it, only rows the owner still holds are written, and the first outcome of a row
wins. The wire form of a message is checked against RFC 5321 dot-stuffing done by a
regular expression, the way it was done before.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from postroom import Postroom
from postroom.db import tables, utcnow
from postroom.outbox import NewEmail, OutboxStatus, Outcome
from postroom.outbox.models import Recipient, RecipientState
from postroom.outbox.recording import sqlite_time
from postroom.outbox.status import Hold
from postroom.transports.pipeline import data_lines


def new_email(n: int, recipients: tuple[str, ...] = ("a@example.com",)) -> NewEmail:
    return NewEmail(
        message_id=f"<w{n}@example.com>",
        account="Default",
        subject=f"s{n}",
        mail_from="noreply@example.com",
        recipients=recipients,
        message=b"body",
    )


def enqueue_and_claim(postroom: Postroom, count: int, owner: str, *, first: int = 0) -> list[int]:
    emails = [new_email(n) for n in range(first, first + count)]
    with postroom.engine.begin() as conn:
        postroom.outbox_store.enqueue_many(conn, emails)
    with postroom.engine.begin() as conn:
        claimed = postroom.outbox_store.claim(conn, owner=owner, limit=count, lease=60)
    return [c.id for c in claimed]


def accepted(address: str) -> Recipient:
    return Recipient(address, RecipientState.ACCEPTED, 250, "2.0.0 Ok: queued as X")


def test_every_outcome_kind_is_stored_from_one_batch(postroom: Postroom) -> None:
    ids = enqueue_and_claim(postroom, 4, "a")
    now = utcnow()
    later = now + timedelta(minutes=5)
    outcomes = [
        Outcome(
            id=ids[0],
            status=OutboxStatus.SENT,
            recipients=(accepted("a@example.com"),),
            next_attempt_at=now,
            sent_at=now,
            newly_delivered=True,
        ),
        Outcome(
            id=ids[1],
            status=OutboxStatus.RETRY,
            recipients=(Recipient("a@example.com", RecipientState.DEFERRED, 451, "later"),),
            next_attempt_at=later,
            last_code=451,
            last_enhanced="4.3.0",
            last_error="451 later",
        ),
        Outcome(
            id=ids[2],
            status=OutboxStatus.HELD,
            recipients=(Recipient("a@example.com"),),
            next_attempt_at=later,
            last_error="held: credentials refused",
            hold=Hold.ACCOUNT,
            refund=True,
        ),
        Outcome(
            id=ids[3],
            status=OutboxStatus.FAILED,
            recipients=(Recipient("a@example.com", RecipientState.REFUSED, 550, "no such user"),),
            next_attempt_at=now,
            last_code=550,
            last_enhanced="5.1.1",
            last_error="refused recipients: a@example.com: 550 no such user",
        ),
    ]
    with postroom.engine.begin() as conn:
        held = postroom.outbox_store.record_many(conn, outcomes, owner="a")
    assert held == set(ids)
    for outcome in outcomes:
        entry = postroom.outbox_entry(outcome.id)
        assert entry.status is outcome.status
        assert entry.recipients == outcome.recipients
        assert entry.next_attempt_at == outcome.next_attempt_at
        assert entry.last_code == outcome.last_code
        assert entry.last_enhanced == outcome.last_enhanced
        assert entry.last_error == outcome.last_error
        assert entry.hold == outcome.hold
        assert entry.lease_owner is None
        assert entry.attempts == (0 if outcome.refund else 1)
        assert entry.sent_at == outcome.sent_at


def test_only_rows_the_owner_holds_are_written(postroom: Postroom) -> None:
    mine = enqueue_and_claim(postroom, 2, "a")
    theirs = enqueue_and_claim(postroom, 1, "b", first=2)
    outcomes = [
        Outcome(
            id=i,
            status=OutboxStatus.SENT,
            recipients=(accepted("a@example.com"),),
            next_attempt_at=utcnow(),
            sent_at=utcnow(),
            newly_delivered=True,
        )
        for i in [*mine, *theirs]
    ]
    with postroom.engine.begin() as conn:
        held = postroom.outbox_store.record_many(conn, outcomes, owner="a")
    assert held == set(mine)
    assert postroom.outbox_entry(theirs[0]).status is OutboxStatus.SENDING
    assert postroom.outbox_entry(theirs[0]).lease_owner == "b"


def test_the_first_outcome_of_a_row_wins(postroom: Postroom) -> None:
    (row,) = enqueue_and_claim(postroom, 1, "a")
    first = Outcome(
        id=row,
        status=OutboxStatus.RETRY,
        recipients=(Recipient("a@example.com", RecipientState.DEFERRED, 421, "busy"),),
        next_attempt_at=utcnow() + timedelta(minutes=1),
        last_error="421 busy",
    )
    second = Outcome(
        id=row,
        status=OutboxStatus.SENT,
        recipients=(accepted("a@example.com"),),
        next_attempt_at=utcnow(),
        sent_at=utcnow(),
    )
    with postroom.engine.begin() as conn:
        assert postroom.outbox_store.record_many(conn, [first, second], owner="a") == {row}
    assert postroom.outbox_entry(row).status is OutboxStatus.RETRY


def test_a_later_outcome_keeps_an_earlier_sent_at(postroom: Postroom) -> None:
    (row,) = enqueue_and_claim(postroom, 1, "a")
    sent = utcnow() - timedelta(hours=1)
    with postroom.engine.begin() as conn:
        t = tables.outbox
        conn.execute(t.update().where(t.c.id == row).values(sent_at=sent))
        outcome = Outcome(
            id=row,
            status=OutboxStatus.SENT,
            recipients=(accepted("a@example.com"),),
            next_attempt_at=utcnow(),
        )
        assert postroom.outbox_store.record_many(conn, [outcome], owner="a") == {row}
    assert postroom.outbox_entry(row).sent_at == sent


def test_claims_with_the_prepared_statement_follow_the_clock(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        postroom.outbox_store.enqueue_many(conn, [new_email(1)])
    store = postroom.outbox_store
    past = utcnow() - timedelta(days=1)
    with postroom.engine.begin() as conn:
        assert store.claim(conn, owner="a", limit=5, lease=60, now=past) == []
    with postroom.engine.begin() as conn:
        (claimed,) = store.claim(conn, owner="b", limit=5, lease=30)
    entry = postroom.outbox_entry(claimed.id)
    assert entry.lease_owner == "b"
    with postroom.engine.connect() as conn:
        until = conn.execute(
            select(tables.outbox.c.lease_expires_at).where(tables.outbox.c.id == claimed.id)
        ).scalar_one()
    assert timedelta(seconds=20) < until - utcnow() <= timedelta(seconds=30)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 5, 7, 45, 57, 8122, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_sqlite_time_is_what_sqlalchemy_writes(value: datetime) -> None:
    engine = create_engine("sqlite://")
    column_type = tables.outbox.c.next_attempt_at.type
    process = column_type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    assert process is not None
    assert sqlite_time(value) == process(value)


_LONE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


def reference_data_lines(message: bytes) -> bytes:
    message = _LONE_LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", message) + b".\r\n"


pieces = st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"\n.", b"a", b" ", b"\xff"])


@given(st.lists(pieces, max_size=40).map(b"".join))
def test_data_lines_stuffs_as_rfc_5321_says(message: bytes) -> None:
    assert data_lines(message) == reference_data_lines(message)
