"""Upgrading a database from 0011 keeps its correspondence as version 1 of each, and the
next save is version 2."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from postroom import Postroom
from postroom.correspondence import versions
from postroom.db import create_db_engine, upgrade
from postroom.db.tables import metadata
from tests.conftest import make_settings

STAMP = "'2026-01-01 00:00:00+00:00'"


def test_upgrade_from_0011_keeps_correspondence_as_version_1(database_url: str) -> None:
    engine = create_db_engine(database_url)
    upgrade(engine, "0011")
    with engine.begin() as conn:
        for name, subject in (("Letter", "'Hello {{ case.id }}'"), ("Footer", "NULL")):
            conn.exec_driver_sql(
                "INSERT INTO correspondence (name, subject, html, text, updated_at) "
                f"VALUES ('{name}', {subject}, '<p>{name}</p>', NULL, {STAMP})"
            )
    engine.dispose()

    with Postroom(make_settings(database_url)) as pr:  # migrates on open
        with pr.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            letter = versions.history(conn, "Letter")
            footer = versions.history(conn, "Footer")
            kept = versions.version(conn, "Letter", 1)
            assert pr.correspondence_store.get(conn, "Letter") == kept
        assert (letter.current, footer.current) == (1, 1)
        [first] = letter.versions
        assert (first.number, first.saved_by, first.language, first.emails) == (
            1,
            "unknown",
            "en",
            0,
        )
        assert first.note == "the text before versions were kept"
        assert first.saved_at.year == 2026
        assert (kept.subject, kept.html, kept.language) == (
            "Hello {{ case.id }}",
            "<p>Letter</p>",
            "en",
        )
        assert footer.versions[0].subject is None

        pr.apply({"correspondence": [{"name": "Letter", "subject": "Hi", "html": "<p>new</p>"}]})
        with pr.engine.connect() as conn:
            after = versions.history(conn, "Letter")
            assert versions.diff(conn, "Letter", 1).parts[0].part == "subject"
        assert [v.number for v in after.versions] == [2, 1]
