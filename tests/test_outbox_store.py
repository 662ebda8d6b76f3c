"""The outbox store on SQLite and PostgreSQL: enqueue, claim with leases, record, steer."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from postroom import Postroom
from postroom.db import tables, utcnow
from postroom.errors import NotFoundError, StateError
from postroom.outbox import NewEmail, OutboxStatus, Outcome
from postroom.outbox.models import Recipient, RecipientState


def new_email(n: int) -> NewEmail:
    return NewEmail(
        message_id=f"<m{n}@example.com>",
        account="Default",
        subject=f"s{n}",
        mail_from="noreply@example.com",
        recipients=("a@example.com",),
        message=b"body",
    )


def enqueue(postroom: Postroom, count: int) -> list[int]:
    with postroom.engine.begin() as conn:
        return postroom.outbox_store.enqueue_many(conn, [new_email(n) for n in range(count)])


def claim(postroom: Postroom, owner: str, limit: int, lease: float = 60.0) -> list[int]:
    with postroom.engine.begin() as conn:
        return [
            c.id for c in postroom.outbox_store.claim(conn, owner=owner, limit=limit, lease=lease)
        ]


def test_enqueue_is_part_of_the_callers_transaction(postroom: Postroom) -> None:
    class Abort(Exception):
        pass

    def enqueue_then_fail() -> None:
        with postroom.engine.begin() as conn:
            postroom.outbox_store.enqueue(conn, new_email(1))
            raise Abort

    with pytest.raises(Abort):
        enqueue_then_fail()
    assert postroom.outbox() == []


def test_claim_takes_due_rows_once(postroom: Postroom) -> None:
    ids = enqueue(postroom, 5)
    first = claim(postroom, "a", 3)
    second = claim(postroom, "b", 10)
    assert first == ids[:3]
    assert second == ids[3:]
    assert claim(postroom, "c", 10) == []
    entry = postroom.outbox_entry(ids[0])
    assert entry.status is OutboxStatus.SENDING
    assert entry.lease_owner == "a"
    assert entry.attempts == 1


def test_concurrent_claims_never_overlap(postroom: Postroom) -> None:
    enqueue(postroom, 200)
    got: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine: list[int] = []
        for _ in range(50):  # bounded
            batch = claim(postroom, name, 7)
            if not batch:
                break
            mine.extend(batch)
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 200
    assert len(set(all_ids)) == 200


def test_expired_lease_is_claimed_again(postroom: Postroom) -> None:
    [outbox_id] = enqueue(postroom, 1)
    assert claim(postroom, "dead-agent", 1, lease=60) == [outbox_id]
    assert claim(postroom, "other", 1) == []  # lease still held
    with postroom.engine.begin() as conn:
        conn.execute(update(tables.outbox).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert claim(postroom, "other", 1) == [outbox_id]
    entry = postroom.outbox_entry(outbox_id)
    assert entry.lease_owner == "other"
    assert entry.attempts == 2


def test_record_requires_the_lease(postroom: Postroom) -> None:
    [outbox_id] = enqueue(postroom, 1)
    claim(postroom, "a", 1)
    outcome = Outcome(
        id=outbox_id,
        status=OutboxStatus.SENT,
        recipients=(Recipient("a@example.com", RecipientState.ACCEPTED, 250, "ok"),),
        next_attempt_at=utcnow(),
        sent_at=utcnow(),
        newly_delivered=True,
    )
    with postroom.engine.begin() as conn:
        assert not postroom.outbox_store.record(conn, outcome, owner="b")
        assert postroom.outbox_store.record(conn, outcome, owner="a")
    entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.SENT
    assert entry.lease_owner is None
    assert entry.recipients[0].state is RecipientState.ACCEPTED


def test_future_rows_are_not_due(postroom: Postroom) -> None:
    [outbox_id] = enqueue(postroom, 1)
    with postroom.engine.begin() as conn:
        conn.execute(
            update(tables.outbox).values(
                status="retry", next_attempt_at=utcnow() + timedelta(minutes=5)
            )
        )
    assert claim(postroom, "a", 10) == []
    postroom.retry(outbox_id)  # an admin says: now
    assert claim(postroom, "a", 10) == [outbox_id]


def test_release_gives_rows_back(postroom: Postroom) -> None:
    ids = enqueue(postroom, 2)
    claim(postroom, "a", 2)
    with postroom.engine.begin() as conn:
        assert postroom.outbox_store.release(conn, ids, owner="a") == 2
    entry = postroom.outbox_entry(ids[0])
    assert (entry.status, entry.attempts, entry.lease_owner) == (OutboxStatus.QUEUED, 0, None)


def test_cancel_and_retry_follow_the_transition_table(postroom: Postroom) -> None:
    ids = enqueue(postroom, 2)
    assert postroom.cancel(ids[0]).status is OutboxStatus.CANCELLED
    assert claim(postroom, "a", 10) == [ids[1]]
    with pytest.raises(StateError, match="sending"):
        postroom.cancel(ids[1])
    with pytest.raises(StateError):
        postroom.retry(ids[1])
    assert postroom.retry(ids[0]).status is OutboxStatus.QUEUED
    with pytest.raises(NotFoundError):
        postroom.retry(999_999)


def test_unbuildable_email_is_kept_failed_and_never_claimed(postroom: Postroom) -> None:
    with postroom.engine.begin() as conn:
        outbox_id = postroom.outbox_store.record_unbuildable(
            conn,
            message_id="<x@postroom.invalid>",
            case_id=None,
            account=None,
            subject="step",
            error="no email account for class X",
        )
    entry = postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.FAILED
    assert entry.last_error == "no email account for class X"
    with pytest.raises(StateError, match="never built"):
        postroom.retry(outbox_id)
    assert claim(postroom, "a", 10) == []


def test_counts(postroom: Postroom) -> None:
    ids = enqueue(postroom, 3)
    postroom.cancel(ids[0])
    counts = postroom.outbox_counts()
    assert counts[OutboxStatus.QUEUED] == 2
    assert counts[OutboxStatus.CANCELLED] == 1
    assert counts[OutboxStatus.SENT] == 0


def test_claim_order_is_oldest_due_first(postroom: Postroom) -> None:
    ids = enqueue(postroom, 3)
    with postroom.engine.begin() as conn:
        conn.execute(
            update(tables.outbox)
            .where(tables.outbox.c.id == ids[2])
            .values(next_attempt_at=utcnow() - timedelta(hours=1))
        )
        rows = conn.execute(select(tables.outbox.c.id)).all()
    assert len(rows) == 3
    assert claim(postroom, "a", 1) == [ids[2]]


def test_a_report_written_while_a_retry_is_claimed_survives_its_outcome(
    postroom: Postroom,
) -> None:
    """One recipient accepted earlier, one retried: a bounce for the first arrives while
    the retry is in flight, and the retry's outcome must not write "accepted" over it."""
    email = NewEmail(
        message_id="<race@example.com>",
        account="Default",
        subject="s",
        mail_from="noreply@example.com",
        recipients=("a@example.com", "b@example.com"),
        message=b"body",
    )
    with postroom.engine.begin() as conn:
        (row_id,) = postroom.outbox_store.enqueue_many(conn, [email])
        earlier = [
            Recipient("a@example.com", RecipientState.ACCEPTED, 250, "ok").to_json(),
            Recipient("b@example.com", RecipientState.DEFERRED, 451, "later").to_json(),
        ]
        conn.execute(update(tables.outbox).values(recipients=earlier))
    assert claim(postroom, "agent", 1) == [row_id]
    bounced = Recipient("a@example.com", RecipientState.BOUNCED, 550, "user unknown", "5.1.1")
    with postroom.engine.begin() as conn:  # the report, applied meanwhile
        now_stored = [bounced.to_json(), earlier[1]]
        conn.execute(update(tables.outbox).values(recipients=now_stored))
    outcome = Outcome(
        id=row_id,
        status=OutboxStatus.SENT,
        recipients=(
            Recipient("a@example.com", RecipientState.ACCEPTED, 250, "ok"),
            Recipient("b@example.com", RecipientState.ACCEPTED, 250, "ok"),
        ),
        next_attempt_at=utcnow(),
    )
    with postroom.engine.begin() as conn:
        assert postroom.outbox_store.record(conn, outcome, owner="agent")
    states = {r.address: r for r in postroom.outbox_entry(row_id).recipients}
    assert states["a@example.com"] == bounced
    assert states["b@example.com"].state is RecipientState.ACCEPTED
