"""Outbox search: text over subject, recipients and Message-ID, filters, sort and pages,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postroom import Postroom
from postroom.db.paging import Page
from postroom.outbox import OutboxStatus
from postroom.outbox.models import OutboxEntry
from postroom.outbox.search import OutboxQuery, SortKey, search_outbox
from tests.conftest import make_settings


@pytest.fixture
def pr(database_url: str) -> Iterator[Postroom]:
    with Postroom(make_settings(database_url)) as opened:
        opened.apply(
            {"accounts": [{"name": "Default", "address": "n@example.com", "host": "h.example"}]}
        )
        yield opened


def found(pr: Postroom, **query: object) -> Page[OutboxEntry]:
    with pr.engine.connect() as conn:
        return search_outbox(conn, OutboxQuery(**query))  # type: ignore[arg-type]


def subjects(page: Page[OutboxEntry]) -> list[str]:
    return [e.subject for e in page.items]


def test_text_matches_subject_recipient_and_message_id(pr: Postroom) -> None:
    first = pr.send(to=["Bob.Smith@example.org"], subject="Loan offer", body="b")
    pr.send(to=["amy@example.org"], subject="Welcome", body="b")
    assert subjects(found(pr, text="loan")) == ["Loan offer"]
    assert subjects(found(pr, text="bob.smith@EXAMPLE")) == ["Loan offer"]
    message_id = pr.outbox_entry(first).message_id
    assert subjects(found(pr, text=message_id)) == ["Loan offer"]  # pasted with <...>
    assert subjects(found(pr, text=message_id.strip("<>")[:12])) == ["Loan offer"]
    assert found(pr, text="nobody@").total == 0
    assert found(pr, text="   ").total == 2  # blank text matches everything


def test_like_wildcards_in_the_text_match_themselves(pr: Postroom) -> None:
    pr.send(to=["a_b@example.org"], subject="50% off", body="b")
    pr.send(to=["axb@example.org"], subject="500 off", body="b")
    assert subjects(found(pr, text="50%")) == ["50% off"]
    assert subjects(found(pr, text="a_b@")) == ["50% off"]
    assert found(pr, text="%").total == 1
    assert found(pr, text="\\").total == 0


def test_filters_sort_and_pages(pr: Postroom) -> None:
    ids = [pr.send(to=[f"r{i}@example.org"], subject=f"S{i:02}", body="b") for i in range(7)]
    pr.cancel(ids[3])
    assert subjects(found(pr, status=OutboxStatus.CANCELLED)) == ["S03"]
    assert subjects(found(pr, text="S0", status=OutboxStatus.QUEUED, page_size=3)) == [
        "S06",
        "S05",
        "S04",
    ]  # newest first by default
    by_subject = found(pr, sort=SortKey.SUBJECT, descending=False, page_size=3, page=2)
    assert subjects(by_subject) == ["S03", "S04", "S05"]
    assert (by_subject.total, by_subject.pages) == (7, 3)
    assert by_subject.has_previous
    assert by_subject.has_next
    last = found(pr, sort=SortKey.ID, descending=False, page_size=3, page=99)
    assert (last.page, subjects(last)) == (3, ["S06"])  # a page past the end is the last
    assert not last.has_next
    for key in SortKey:  # every key sorts on both databases
        assert found(pr, sort=key).total == 7
    assert found(pr, account="Default").total == 7
    assert found(pr, account="Other").total == 0
    assert found(pr, case_id="M-1").total == 0
