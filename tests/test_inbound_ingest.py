"""Durable ingest: once per message whatever happens, one transaction with its effects."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select

from postroom import Postroom
from postroom.db import tables
from postroom.errors import StateError
from postroom.inbound import ingest as ingest_module
from postroom.inbound.models import FetchedMessage, InboundStatus, MailboxRef, ServerState
from postroom.inbound.store import InboundStore
from tests import mailsamples
from tests.conftest import make_settings
from tests.ingestkit import MAILBOX, history, ingest, new_case, records

ACK = {
    "on": "email_received",
    "to": [{"sender": True}],
    "subject": "Thanks",
    "body": "<p>Thanks</p>",
    "set_status": "Replied",
}


def _effects(pr: Postroom, case_id: str) -> tuple[int, int, int, int]:
    """(received rows, outbox rows, attachments, history lines) of the database and case."""
    case = pr.cases.get(case_id)
    with pr.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(tables.inbound_messages)).scalar()
    return int(rows or 0), len(pr.outbox(case_id=case_id)), len(case.attachments), len(case.history)


def test_the_same_message_twice_is_taken_once(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    raw = mailsamples.reply(in_reply_to=sent_id)
    first = ingest(postroom, raw, key="10")
    after_first = _effects(postroom, case_id)
    again = ingest(postroom, raw, key="10")  # a crash came between commit and flag
    moved = ingest(postroom, raw, key="11")  # the same Message-ID under another UID
    assert not first.duplicate
    assert (again.duplicate, moved.duplicate) == (True, True)
    assert {again.id, moved.id} == {first.id}
    assert (again.status, again.case_id, again.settle) == (first.status, case_id, True)
    assert _effects(postroom, case_id) == after_first
    assert after_first[:2] == (1, 2)  # one row; the welcome email and one answer


def test_a_duplicate_of_a_settled_message_is_settled_too(postroom: Postroom) -> None:
    postroom.apply(records())
    store = InboundStore()
    raw = mailsamples.plain()
    first = ingest(postroom, raw, key="5")
    with postroom.engine.begin() as conn:
        assert store.pending_keys(conn, MAILBOX, "7") == [(first.id, "5")]
        store.mark_settled(conn, [first.id])
        assert store.pending_keys(conn, MAILBOX, "7") == []
    # The server shows the same message again under another UID (a resync, a copy).
    ingest(postroom, raw, key="9", validity="8")
    with postroom.engine.begin() as conn:
        assert store.pending_keys(conn, MAILBOX, "8") == [(first.id, "9")]
        assert store.pending_keys(conn, MAILBOX, "7") == []


def test_within_runs_in_the_transaction_and_for_duplicates(postroom: Postroom) -> None:
    postroom.apply(records())
    seen: list[tuple[str, int]] = []

    def within(conn: Connection) -> None:
        # It sees the message's row: the same transaction.
        count = conn.execute(select(func.count()).select_from(tables.inbound_messages)).scalar()
        seen.append(("within", int(count or 0)))

    raw = mailsamples.plain()
    item = FetchedMessage(key="1", size=len(raw), raw=raw)
    postroom.ingestor.ingest(MAILBOX, item, validity="7", within=within)
    result = postroom.ingestor.ingest(MAILBOX, item, validity="7", within=within)
    assert result.duplicate
    assert seen == [("within", 1), ("within", 1)]


def test_a_within_that_raises_rolls_everything_back(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    before = _effects(postroom, case_id)

    class LeaseGone(StateError):
        pass

    def within(conn: Connection) -> None:
        raise LeaseGone("another listener holds the mailbox")

    raw = mailsamples.reply(in_reply_to=sent_id)
    item = FetchedMessage(key="1", size=len(raw), raw=raw)
    with pytest.raises(LeaseGone):
        postroom.ingestor.ingest(MAILBOX, item, validity="7", within=within)
    assert _effects(postroom, case_id) == before
    assert postroom.cases.get(case_id).status == "New"
    with postroom.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.auto_replies)).scalar() == 0
    # Read again by the listener that holds the lease now: taken once, with its effects.
    result = ingest(postroom, raw)
    assert (result.duplicate, result.case_id) == (False, case_id)
    assert postroom.cases.get(case_id).status == "Replied"


def test_without_a_message_id_the_bytes_decide(postroom: Postroom) -> None:
    postroom.apply(records())
    raw = mailsamples.no_message_id()
    first = ingest(postroom, raw, key="1")
    second = ingest(postroom, raw, key="2")
    other = ingest(postroom, raw.replace(b"No id here.", b"No id there."), key="3")
    assert second.duplicate
    assert second.id == first.id
    assert not other.duplicate
    assert postroom.received_message(first.id).message_id is None


def test_a_message_too_large_is_recorded_and_left(postroom: Postroom) -> None:
    postroom.apply(records())
    item = FetchedMessage(key="3", size=30_000_000, raw=None)
    result = postroom.ingestor.ingest(MAILBOX, item, validity="7")
    assert (result.status, result.settle, result.duplicate) == (
        InboundStatus.TOO_LARGE,
        False,
        False,
    )
    message = postroom.received_message(result.id)
    assert message.server_state is ServerState.LEFT
    assert message.size == 30_000_000
    assert "30,000,000 bytes" in message.reason
    with pytest.raises(StateError, match="too large"):
        postroom.received_raw(result.id)
    again = postroom.ingestor.ingest(MAILBOX, item, validity="7")
    assert (again.duplicate, again.id, again.settle) == (True, result.id, False)
    with postroom.engine.connect() as conn:
        assert InboundStore().pending_keys(conn, MAILBOX, "7") == []


def test_mailboxes_are_kept_apart(postroom: Postroom) -> None:
    postroom.apply(records())
    raw = mailsamples.plain()
    first = ingest(postroom, raw)
    other = ingest(postroom, raw, mailbox=MailboxRef(MAILBOX.account, "Archive"))
    assert not other.duplicate
    assert other.id != first.id


def test_bad_mail_is_kept_with_its_defects(postroom: Postroom) -> None:
    postroom.apply(records())
    for key, raw in enumerate(
        (
            mailsamples.broken_mime(),
            mailsamples.invalid_charsets(),
            mailsamples.eight_bit_headers(),
            mailsamples.nesting_bomb(),
            mailsamples.many_attachments(),
            b"\x00\xff garbage",
        )
    ):
        result = ingest(postroom, raw, key=str(key))
        assert result.settle
        assert postroom.received_raw(result.id) == raw
    assert any(m.defects for m in postroom.received())


def test_a_routing_bug_keeps_the_message_for_triage(
    postroom: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    postroom.apply(records())
    case_id, sent_id = new_case(postroom)

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(ingest_module, "route", broken)
    result = ingest(postroom, mailsamples.reply(in_reply_to=sent_id))
    assert (result.status, result.case_id, result.settle) == (InboundStatus.UNMATCHED, None, True)
    assert "could not be routed (KeyError" in postroom.received_message(result.id).reason
    assert history(postroom, case_id, "email-received") == []


@pytest.mark.postgres
def test_a_concurrent_ingest_of_the_same_message_is_a_duplicate(postgres_url: str) -> None:
    # Both pass the dedupe lookup; the other commits first and the unique index decides.
    with Postroom(make_settings(postgres_url)) as pr:
        pr.apply(records(steps=[ACK]))
        case_id, sent_id = new_case(pr)
        raw = mailsamples.reply(in_reply_to=sent_id)
        started: list[bool] = []
        raced: list[int] = []

        def other_ingest_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO inbound_messages") and not started:
                started.append(True)  # before: the other ingest runs this hook too
                raced.append(ingest(pr, raw, key="2").id)

        event.listen(pr.engine, "before_cursor_execute", other_ingest_first)
        try:
            cursors: list[str] = []
            result = pr.ingestor.ingest(
                MAILBOX,
                FetchedMessage(key="1", size=len(raw), raw=raw),
                validity="7",
                within=lambda conn: cursors.append("saved"),
            )
        finally:
            event.remove(pr.engine, "before_cursor_execute", other_ingest_first)
        assert (result.duplicate, result.id) == (True, raced[0])
        assert cursors == ["saved"]  # the cursor moves on past the duplicate
        assert len(history(pr, case_id, "email-received")) == 1
        assert len(pr.outbox(case_id=case_id)) == 2


def test_the_same_reply_read_from_two_mailboxes_reaches_its_case_once(postroom: Postroom) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    raw = mailsamples.reply(in_reply_to=sent_id)
    first = ingest(postroom, raw)
    before = _effects(postroom, case_id)
    copy = ingest(postroom, raw, mailbox=MailboxRef("Default", "INBOX"))
    assert not copy.duplicate
    assert (copy.status, copy.case_id, copy.immediate) == (InboundStatus.MATCHED, case_id, ())
    assert postroom.received_message(copy.id).reason == (
        f"the same message was received as #{first.id} from {MAILBOX.key}, on case "
        f"{case_id}: not attached again"
    )
    rows, outbox, attachments, lines = _effects(postroom, case_id)
    assert (rows, outbox, attachments, lines) == (before[0] + 1, *before[1:])
    received = [i.id for i in postroom.conversation(case_id) if i.kind == "received"]
    assert received == [first.id]


SECOND = MailboxRef("Default", "INBOX")  # another account reading the same mail


@pytest.mark.parametrize("message_id", [None, "twin-1@customer.example"])
def test_a_reply_read_from_two_mailboxes_reaches_its_case_once(
    postroom: Postroom, message_id: str | None
) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, sent_id = new_case(postroom)
    raw = mailsamples.plain(message_id=message_id, in_reply_to=sent_id)
    first = ingest(postroom, raw)
    assert (first.status, first.case_id) == (InboundStatus.MATCHED, case_id)
    before = _effects(postroom, case_id)
    copy = ingest(postroom, raw, mailbox=SECOND)
    assert not copy.duplicate
    assert (copy.status, copy.case_id, copy.immediate) == (InboundStatus.MATCHED, case_id, ())
    assert postroom.received_message(copy.id).reason == (
        f"the same message was received as #{first.id} from {MAILBOX.key}, on case "
        f"{case_id}: not attached again"
    )
    rows, outbox, attachments, lines = _effects(postroom, case_id)
    assert (rows, outbox, attachments, lines) == (before[0] + 1, *before[1:])
    assert len(history(postroom, case_id, "email-received")) == 1


@pytest.mark.parametrize("message_id", [None, "stranger-1@elsewhere.example"])
def test_stranger_mail_read_from_two_mailboxes_is_triaged_once(
    postroom: Postroom, message_id: str | None
) -> None:
    postroom.apply(records(steps=[ACK]))
    case_id, _ = new_case(postroom)
    stranger = "Sam Stranger <sam@elsewhere.example>"

    def mail(n: int) -> bytes:
        return mailsamples.plain(
            f"Message {n}\n",
            message_id=message_id and f"{n}-{message_id}",
            sender=stranger,
            subject=f"Question {n}",
        )

    # Still in triage: the copy is not listed a second time.
    waiting = ingest(postroom, mail(1), key="1")
    copy = ingest(postroom, mail(1), key="1", mailbox=SECOND)
    assert (copy.status, copy.case_id) == (InboundStatus.DISMISSED, None)
    assert postroom.received_message(copy.id).reason == (
        f"the same message was received as #{waiting.id} from {MAILBOX.key}, in triage: "
        "not listed again"
    )
    assert [m.id for m in postroom.received(unmatched=True)] == [waiting.id]

    # Dismissed: the copy does not bring it back.
    dismissed = ingest(postroom, mail(2), key="2")
    postroom.dismiss_received(dismissed.id)
    copy = ingest(postroom, mail(2), key="2", mailbox=SECOND)
    assert copy.status is InboundStatus.DISMISSED
    assert f"as #{dismissed.id} from {MAILBOX.key}, dismissed" in (
        postroom.received_message(copy.id).reason
    )

    # Attached by an admin: the copy is on that case, attached once, its steps fired once.
    attached = ingest(postroom, mail(3), key="3")
    postroom.attach_received(attached.id, case_id)
    before = _effects(postroom, case_id)
    copy = ingest(postroom, mail(3), key="3", mailbox=SECOND)
    assert (copy.status, copy.case_id, copy.immediate) == (InboundStatus.MATCHED, case_id, ())
    rows, outbox, attachments, lines = _effects(postroom, case_id)
    assert (rows, outbox, attachments, lines) == (before[0] + 1, *before[1:])
    assert [m.id for m in postroom.received(unmatched=True)] == [waiting.id]
