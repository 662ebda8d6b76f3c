"""Correspondence versions: recorded on each email and in the case history, listed with
the emails each rendered, compared, restored; who and when; images stored once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.correspondence import versions
from postroom.correspondence.diffs import LineKind, PartChange, part_diff
from postroom.correspondence.models import Correspondence, InlineImage
from postroom.correspondence.store import CorrespondenceStore
from postroom.db import create_db_engine, tables, upgrade
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, NotFoundError
from tests.imagekit import png
from tests.test_cases import CLASS, CREATED_STEP, records
from tests.test_server import wait_for

PARAGRAPH = "<p>Hello {{ party.name }}</p>{% include 'Signature' %}"
CHANGED = "<p>Dear {{ party.name }}, your case is open.</p>{% include 'Signature' %}"


def with_created_html(html: str, **more: Any) -> dict[str, Any]:
    data = records(2525, steps=[CREATED_STEP])
    created = next(c for c in data["correspondence"] if c["name"] == "Created")
    created.update(html=html, **more)
    return data


def queued_line(postroom: Postroom, case_id: str) -> str:
    [queued] = [h for h in postroom.cases.get(case_id).history if h.action == "email-queued"]
    return queued.detail


def test_each_email_records_the_version_it_was_rendered_from(postroom: Postroom) -> None:
    postroom.apply(with_created_html(PARAGRAPH))
    first = postroom.cases.create(CLASS, operator="alice")
    postroom.apply(with_created_html(CHANGED))
    second = postroom.cases.create(CLASS, operator="alice")

    rows = {e.case_id: e for e in postroom.outbox()}
    assert (rows[first.id].correspondence, rows[first.id].correspondence_version) == ("Created", 1)
    assert (rows[second.id].correspondence, rows[second.id].correspondence_version) == (
        "Created",
        2,
    )
    assert rows[first.id].language == rows[second.id].language == "en"
    assert "correspondence 'Created' version 1" in queued_line(postroom, first.id)
    assert "correspondence 'Created' version 2" in queued_line(postroom, second.id)

    with postroom.engine.connect() as conn:
        found = versions.history(conn, "Created")
        changes = versions.diff(conn, "Created", 1, 2)
    assert [(v.number, v.emails, v.current) for v in found.versions] == [
        (2, 1, True),
        (1, 1, False),
    ]
    assert found.current == 2
    assert not found.deleted
    assert all(v.saved_by == "apply" for v in found.versions)
    assert found.versions[0].saved_at >= found.versions[1].saved_at
    [html] = changes.parts
    assert (html.part, html.change) == ("html", PartChange.CHANGED)
    assert "-<p>Hello {{ party.name }}</p>" in html.unified
    assert "+<p>Dear {{ party.name }}, your case is open.</p>" in html.unified
    kinds = [line.kind for line in html.lines]
    assert kinds[0] is LineKind.HUNK
    assert {LineKind.REMOVED, LineKind.ADDED} <= set(kinds)


def test_restore_saves_the_old_content_as_a_new_version(postroom: Postroom) -> None:
    postroom.apply(with_created_html(PARAGRAPH))
    postroom.apply(with_created_html(CHANGED), by="cli:alice")
    done = versions.restore(postroom, "Created", 1, by="studio:bob")
    assert (done.change, done.current, done.restored) == ("updated", 3, 1)

    with postroom.engine.connect() as conn:
        first = versions.version(conn, "Created", 1)
        third = versions.version(conn, "Created", 3)
        found = versions.history(conn, "Created")
        assert not versions.diff(conn, "Created", 1, 3).changed
        assert versions.diff(conn, "Created", 2).new == 3  # to: the current by default
        current = postroom.correspondence_store.get(conn, "Created")
    assert third == first == current
    latest = found.versions[0]
    assert (latest.number, latest.saved_by, latest.note) == (
        3,
        "studio:bob",
        "restored from version 1",
    )
    assert found.versions[1].saved_by == "cli:alice"
    assert found.updated_by == "studio:bob"

    again = versions.restore(postroom, "Created", 3, by="studio:bob")
    assert (again.change, again.current) == ("unchanged", 3)


def test_a_deleted_correspondence_keeps_its_versions_and_restore_recreates_it(
    postroom: Postroom,
) -> None:
    postroom.apply({"correspondence": [{"name": "Gone", "subject": "S", "html": "<p>one</p>"}]})
    postroom.apply({"correspondence": [{"name": "Gone", "subject": "S", "html": "<p>two</p>"}]})
    with postroom.engine.begin() as conn:
        postroom.correspondence_store.delete(conn, "Gone")
    with postroom.engine.connect() as conn:
        found = versions.history(conn, "Gone")
        assert (found.deleted, found.current) == (True, None)
        assert versions.diff(conn, "Gone", 1).new == 2  # to: the latest when deleted
    done = versions.restore(postroom, "Gone", 1, by="apply")
    assert (done.change, done.current) == ("created", 3)
    with postroom.engine.connect() as conn:
        assert postroom.correspondence_store.get(conn, "Gone").html == "<p>one</p>"


def test_unknown_names_and_numbers_are_not_found(postroom: Postroom) -> None:
    postroom.apply({"correspondence": [{"name": "One", "subject": "S", "html": "<p>x</p>"}]})
    with postroom.engine.connect() as conn:
        with pytest.raises(NotFoundError, match="no correspondence named 'Nope'"):
            versions.history(conn, "Nope")
        with pytest.raises(NotFoundError, match="has no version 7"):
            versions.version(conn, "One", 7)
        with pytest.raises(NotFoundError, match="has no version 7"):
            versions.diff(conn, "One", 1, 7)
    with pytest.raises(NotFoundError):
        versions.restore(postroom, "One", 7, by="apply")


def test_restore_checks_the_templates_again(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"correspondence": [{"name": "Base", "html": "<p>base</p>"}]})
    pr.apply({"correspondence": [{"name": "Uses", "subject": "S", "html": "{% include 'Base' %}"}]})
    pr.apply({"correspondence": [{"name": "Uses", "subject": "S", "html": "<p>alone</p>"}]})
    with pr.engine.begin() as conn:
        pr.correspondence_store.delete(conn, "Base")
    # Version 1 includes a fragment that no longer exists: refused, nothing saved.
    with pytest.raises(ConfigurationError, match="Base"):
        versions.restore(pr, "Uses", 1, by="apply")
    with pr.engine.connect() as conn:
        assert versions.history(conn, "Uses").current == 2


def test_translations_and_images_are_compared_part_by_part(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    logo, other = png(4, 4), png(8, 8)
    base = {"name": "Letter", "subject": "Hi", "html": '<p>x</p><img src="cid:logo">'}
    first = Correspondence.model_validate(
        {**base, "images": {"logo": InlineImage(filename="logo.png", content=logo)}}
    )
    second = Correspondence.model_validate(
        {
            **base,
            "subject": "Hello",
            "translations": {"de": {"subject": "Hallo", "html": '<p>x</p><img src="cid:logo">'}},
            "images": {"logo": InlineImage(filename="logo2.png", content=other)},
        }
    )
    for record in (first, second):
        with pr.engine.begin() as conn:
            pr.correspondence_store.put(conn, record, by="apply")
    with pr.engine.connect() as conn:
        found = versions.diff(conn, "Letter", 1, 2)
        old = versions.version(conn, "Letter", 1)
    assert old.images["logo"].content == logo  # the old bytes are kept
    assert [p.part for p in found.parts] == [
        "subject",
        "translations.de.subject",
        "translations.de.html",
    ]
    assert found.parts[1].change is PartChange.ADDED
    [image] = found.images
    assert (image.content_id, image.change) == ("logo", PartChange.CHANGED)
    assert "images.logo: changed logo.png" in found.unified
    assert "-> logo2.png" in found.unified


def test_long_html_lines_are_compared_tag_by_tag() -> None:
    cells = "".join(f"<td>cell {n}</td>" for n in range(40))
    found = part_diff("html", cells, cells.replace("cell 7", "cell seven"), labels=("a", "b"))
    assert found is not None
    assert [x.text for x in found.lines if x.kind is LineKind.REMOVED] == ["<td>cell 7</td>"]
    assert [x.text for x in found.lines if x.kind is LineKind.ADDED] == ["<td>cell seven</td>"]


@pytest.mark.postgres
def test_two_writers_storing_the_same_image_do_not_conflict(postgres_url: str) -> None:
    engine = create_db_engine(postgres_url)
    upgrade(engine)
    image = InlineImage(filename="logo.png", content=png(6, 6))
    first, second = engine.connect(), engine.connect()
    failures: list[BaseException] = []
    try:
        first.begin()
        CorrespondenceStore._keep_images(first, [image], now=utcnow())

        def other() -> None:
            try:  # waits on the first transaction's uncommitted row, then must skip it
                with second.begin():
                    CorrespondenceStore._keep_images(second, [image], now=utcnow())
            except BaseException as exc:  # reported by the test below
                failures.append(exc)

        waiting = threading.Thread(target=other)
        waiting.start()
        _wait_for_lock(engine)
        first.commit()
        waiting.join(timeout=30)
        assert not waiting.is_alive()
        assert failures == []
        with engine.connect() as conn:
            count = conn.scalar(select(func.count()).select_from(tables.correspondence_images))
        assert count == 1
    finally:
        first.close()
        second.close()
        engine.dispose()


def _wait_for_lock(engine: Any) -> None:
    """Until the second writer waits on the first's row (it has then read it as missing)."""

    def blocked() -> bool:
        with engine.connect() as conn:
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).scalar()
        return bool(waiting)

    wait_for(blocked, limit=20)
