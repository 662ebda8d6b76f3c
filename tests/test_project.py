"""The project's surface: public names, settings precedence, schema migrations, demo."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import postroom
from postroom import Postroom, Settings
from postroom.db import create_db_engine, upgrade
from postroom.db.tables import metadata
from postroom.demo import run_demo
from postroom.devinbox import DevInbox
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import free_port

EXAMPLE = Path(__file__).parent.parent / "examples" / "mortgage.yaml"


def test_public_surface_is_exactly_all() -> None:
    public = {n for n in dir(postroom) if not n.startswith("_")} - {
        # subpackages are importable, but not part of the flat surface
        "accounts",
        "agent",
        "app",
        "auth",
        "keystores",
        "signing",
        "cases",
        "inbound",
        "config",
        "correspondence",
        "db",
        "errors",
        "operators",
        "outbox",
        "records",
        "catalog",
        "sending",
        "receiving",
        "listening",
        "security",
        "settings",
        "transports",
        "validation",
        "demo",
        "devinbox",
        "cli",
        "identity",
        "api",
        "web",
        "server",
        "supervisor",
        "text",
        "bounces",
        "suppression",
        "webhooks",
        "suppressing",
        "hooking",
        "composing",
        "languages",
        "reviews",
        "proctitle",
        "diffing",
    }
    assert public | {"__version__"} == set(postroom.__all__)


def test_every_error_is_a_postroom_error_and_a_builtin() -> None:
    assert issubclass(postroom.TransientDeliveryError, ConnectionError)
    assert issubclass(postroom.ConfigurationError, ValueError)
    assert issubclass(postroom.NotFoundError, LookupError)
    assert issubclass(postroom.StateError, RuntimeError)
    for name in postroom.__all__:
        obj = getattr(postroom, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, postroom.PostroomError)


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTROOM_DATABASE_URL", raising=False)
    assert Settings().database_url == "sqlite:///./postroom.db"
    monkeypatch.setenv("POSTROOM_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("POSTROOM_BATCH_SIZE", "17")
    assert Settings().database_url == "sqlite:///from-env.db"
    assert Settings().batch_size == 17
    flagged = Settings.from_flags(database_url="sqlite:///from-flag.db", batch_size=None)
    assert flagged.database_url == "sqlite:///from-flag.db"
    assert flagged.batch_size == 17  # no flag given: the environment still counts


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="sqlite:// or postgresql://"):
        Settings(database_url="mysql://x")
    with pytest.raises(ValueError, match="batch_size"):
        Settings(batch_size=0)
    assert Settings(database_url="postgresql://u@h/db").database_url.startswith(
        "postgresql+psycopg://"
    )


def test_migrations_build_exactly_the_declared_schema(database_url: str) -> None:
    url = database_url  # a database nothing has migrated yet
    engine = create_db_engine(url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert "outbox" in inspect(engine).get_table_names()
    engine.dispose()


def test_upgrade_from_0001_keeps_accounts_and_fills_new_fields(database_url: str) -> None:
    url = database_url  # a database nothing has migrated yet
    engine = create_db_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO accounts (name, provider, protocol, address, display_name, security, "
            "tls_min_version, allow_insecure_auth, advanced, host, port, created_at, updated_at) "
            "VALUES ('Default', 'custom', 'smtp', 'a@example.com', '', 'starttls', '1.2', "
            "false, '{}', 'smtp.example.com', 587, '2026-01-01 00:00:00+00:00', "
            "'2026-01-01 00:00:00+00:00')"
        )
    engine.dispose()
    with Postroom(make_settings(url)) as upgraded:  # migrates on open
        account = upgraded.account("Default")
        assert account.graph_url == "https://graph.microsoft.com"
        assert account.save_to_sent_items is True
        assert account.on_unknown_outcome == "retry"
        assert account.auth_profile is None
        assert upgraded.auth_profiles() == []
        with upgraded.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []


def test_upgrade_keeps_attachments_that_share_a_name(database_url: str) -> None:
    url = database_url  # a database nothing has migrated yet
    engine = create_db_engine(url)
    upgrade(engine, "0007")  # before names were unique in the database
    stamp = "'2026-01-01 00:00:00+00:00'"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cases (id, case_type, status, data, created_at, updated_at) "
            f"VALUES ('C-1', 'T', 'New', '{{}}', {stamp}, {stamp})"
        )
        for content in (b"first", b"second", b"third"):
            conn.execute(
                text(
                    "INSERT INTO case_attachments (case_id, name, content_type, content, size, "
                    f"created_at) VALUES ('C-1', 'a.txt', 'text/plain', :content, 5, {stamp})"
                ),
                {"content": content},
            )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, name, content FROM case_attachments ORDER BY id"
        ).all()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    _, second, third = rows
    assert [r.name for r in rows] == ["a.txt", f"a.txt-{second.id}", f"a.txt-{third.id}"]
    assert [bytes(r.content) for r in rows] == [b"first", b"second", b"third"]
    assert diff == []


def test_sqlite_is_durable(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_key_file_is_generated_private(tmp_path: Path) -> None:
    pr = Postroom(Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", secret_key=None))
    pr.close()
    key = tmp_path / "postroom.key"
    assert key.exists()
    assert key.stat().st_mode & 0o777 == 0o600


def test_demo_runs_the_reference_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The demo sets these for the example file; monkeypatch puts them back afterwards.
    for name in ("POSTROOM_DEMO_SMTP_PORT", "POSTROOM_DEMO_CA_FILE", "POSTROOM_DEMO_SMTP_PASSWORD"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "mortgage.yaml").write_text(EXAMPLE.read_text())
    pr = Postroom(make_settings(f"sqlite:///{tmp_path / 'postroom.db'}"))
    try:
        result = run_demo(
            pr,
            config=tmp_path / "examples" / "mortgage.yaml",
            inbox_dir=tmp_path / "postroom-inbox",
            port=free_port(),
        )
    finally:
        pr.close()
    [received] = result.received
    assert received.rcpt_tos == ("carol.manager@example.com",)
    assert received.mail_from == "mortgages@example.com"
    assert received.message["Subject"].startswith(f"Mortgage request {result.case.id} created")
    assert [e.status for e in result.emails] == ["sent"]
    assert [a.content_type for a in result.case.attachments] == ["message/rfc822"]


def test_dev_inbox_refuses_non_loopback(tmp_path: Path) -> None:
    with pytest.raises(postroom.ConfigurationError, match="loopback"):
        DevInbox(tmp_path, host="0.0.0.0")


def test_key_mismatch_is_explained(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Postroom(Settings(database_url=url, secret_key=TEST_KEY)) as pr:
        pr.apply(
            {
                "accounts": [
                    {
                        "name": "Default",
                        "address": "a@example.com",
                        "host": "h.example.com",
                        "password": "pw",
                    }
                ]
            }
        )
    with Postroom(Settings(database_url=url, secret_key="another-key-of-sufficient-length")) as pr:
        with pytest.raises(postroom.SecretError, match="secret key differs"):
            pr.account("Default")


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_lost_key_file_is_not_silently_replaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keyed.db'}"
    with Postroom(Settings(database_url=url, secret_key=None)) as pr:
        pr.apply(
            {
                "accounts": [
                    {
                        "name": "Default",
                        "address": "a@example.com",
                        "host": "h.example.com",
                        "password": "pw-kept",
                    }
                ]
            }
        )
    key = tmp_path / "postroom.key"
    key.rename(tmp_path / "elsewhere.key")
    with pytest.raises(postroom.SecretError, match=r"key file .* is missing"):
        Postroom(Settings(database_url=url, secret_key=None))
    assert not key.exists()
    (tmp_path / "elsewhere.key").rename(key)
    with Postroom(Settings(database_url=url, secret_key=None)) as pr:
        password = pr.account("Default").password
        assert password is not None
        assert password.get_secret_value() == "pw-kept"
