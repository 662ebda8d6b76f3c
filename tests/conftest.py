"""Shared fixtures: databases (SQLite and PostgreSQL), certificates, Postroom, servers."""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
from sqlalchemy.engine import make_url

from postroom import Postroom, Settings
from tests.fakes import ServerInfo, smtp_server

POSTGRES_URL = os.environ.get(
    "POSTROOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_KEY = "test-secret-key-0123456789abcdef"


def _postgres_admin_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def postgres_available() -> str | None:
    """``None`` when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(_postgres_admin_dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: not available here
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL; skips (fails under CI) when there is none."""
    reason = postgres_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; under CI the PostgreSQL tests must run")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"postroom_test_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'postroom.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_KEY,
        "poll_interval": 0.05,
        "heartbeat_interval": 0.5,
        "backoff_base": 0.0,
        "backoff_max": 0.0,
        "smtp_timeout": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


def case_type_with(step: dict[str, Any]) -> dict[str, Any]:
    """Records holding one minimal case type, ``A-B-C``, with this one step."""
    return {
        "case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-", "steps": [step]}]
    }


@pytest.fixture
def postroom(database_url: str) -> Iterator[Postroom]:
    pr = Postroom(make_settings(database_url))
    try:
        yield pr
    finally:
        pr.close()


@pytest.fixture
def sqlite_postroom(tmp_path: Path) -> Iterator[Postroom]:
    pr = Postroom(make_settings(f"sqlite:///{tmp_path / 'postroom.db'}"))
    try:
        yield pr
    finally:
        pr.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost and 127.0.0.1 from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerInfo]:
    """One plain SMTP server for a whole test module."""
    with smtp_server() as srv:
        yield srv
