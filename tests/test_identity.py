"""API tokens, admin users and sessions; pausing an agent; their CLI commands."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.db import tables
from postroom.errors import ConfigurationError, NotFoundError
from postroom.identity import Scope, SessionStore
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_delivery import account

PASSWORD = "correct horse battery"


def wait_for(condition: Callable[[], bool], *, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def postroom(tmp_path: Path) -> Postroom:
    return Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}"))


def test_a_token_is_stored_as_a_hash_and_checked_with_its_scopes(postroom: Postroom) -> None:
    issued = postroom.identity.create_token(name="case app", scopes={Scope.SEND})
    assert issued.value.startswith(f"prt_{issued.token.id}_")
    with postroom.engine.connect() as conn:
        [row] = conn.execute(select(tables.api_tokens)).all()
    secret = issued.value.rsplit("_", 1)[1]
    assert secret not in str(tuple(row))
    token = postroom.identity.authenticate(issued.value)
    assert token is not None
    assert token.allows(Scope.SEND)
    assert not token.allows(Scope.ADMIN)
    assert postroom.identity.list_tokens()[0].last_used_at is not None
    admin = postroom.identity.create_token(name="ops", scopes={Scope.ADMIN}).token
    assert admin.allows(Scope.SEND)  # admin is everything
    for wrong in (issued.value + "x", issued.value[:-1], "prt__x", "Bearer x", "", "prt_zz_yy"):
        assert postroom.identity.authenticate(wrong) is None
    postroom.identity.revoke_token(issued.token.id)
    assert postroom.identity.authenticate(issued.value) is None
    with pytest.raises(NotFoundError):
        postroom.identity.revoke_token("nope")
    with pytest.raises(ConfigurationError, match="at least one scope"):
        postroom.identity.create_token(name="x", scopes=set())


def test_admin_passwords_are_argon2_and_sessions_expire(postroom: Postroom) -> None:
    postroom.identity.create_admin(username="alice", password=PASSWORD)
    with postroom.engine.connect() as conn:
        stored = conn.execute(select(tables.admin_users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert postroom.identity.log_in(username="alice", password="wrong password!") is None
    assert postroom.identity.log_in(username="bob", password=PASSWORD) is None
    opened = postroom.identity.log_in(username="alice", password=PASSWORD)
    assert opened is not None
    session_id, session = opened
    assert postroom.identity.session(session_id) == session
    assert postroom.identity.session(session_id + "x") is None
    postroom.identity.log_out(session_id)
    assert postroom.identity.session(session_id) is None
    with pytest.raises(ConfigurationError, match="already exists"):
        postroom.identity.create_admin(username="alice", password=PASSWORD)
    with pytest.raises(ConfigurationError, match="at least 12 characters"):
        postroom.identity.create_admin(username="bob", password="short")
    brief = SessionStore(lifetime=timedelta(seconds=-1))
    with postroom.engine.begin() as conn:
        expired_id, _ = brief.open(conn, "alice")
        assert brief.get(conn, expired_id) is None


def test_a_paused_agent_claims_nothing_until_resumed(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        agent = pr.agent()
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(agent.run(stop=stop),))
        thread.start()
        try:
            wait_for(lambda: any(a.id == agent.id for a in pr.agents()))
            assert pr.pause_agent(agent.id).paused
            wait_for(lambda: agent.paused)  # it saw the pause at a claim
            outbox_id = pr.send(to=["a@example.net"], subject="s", body="b", class_name="Default")
            time.sleep(0.5)  # ten poll intervals: a running agent would have sent it
            assert pr.outbox_entry(outbox_id).status is OutboxStatus.QUEUED
            assert not pr.pause_agent(agent.id, paused=False).paused
            wait_for(lambda: pr.outbox_entry(outbox_id).status is OutboxStatus.SENT)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert len(srv.sink.received) == 1
        with pytest.raises(NotFoundError):
            pr.pause_agent("no-such-agent")


def test_cli_creates_tokens_and_admins_without_echoing_secrets(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'p.db'}"]
    env = {"POSTROOM_SECRET_KEY": "k" * 32}
    created = runner.invoke(app, [*db, "tokens", "create", "crm", "--scope", "send"], env=env)
    assert created.exit_code == 0, created.output
    value = next(line for line in created.output.splitlines() if line.startswith("prt_"))
    listed = runner.invoke(app, [*db, "tokens", "list"], env={**env, "COLUMNS": "200"})
    assert "crm" in listed.output
    assert value.rsplit("_", 1)[1] not in listed.output
    token_id = value.split("_")[1]
    revoked = runner.invoke(app, [*db, "tokens", "revoke", token_id], env=env)
    assert revoked.exit_code == 0
    assert f"token {token_id} (crm) revoked" in revoked.output
    bad = runner.invoke(app, [*db, "tokens", "create", "x", "--scope", "root"], env=env)
    assert bad.exit_code != 0
    made = runner.invoke(
        app, [*db, "admin", "create", "ops", "--password-stdin"], input=PASSWORD + "\n", env=env
    )
    assert made.exit_code == 0, made.output
    assert PASSWORD not in made.output
    short = runner.invoke(
        app, [*db, "admin", "create", "dev", "--password-stdin"], input="short\n", env=env
    )
    assert short.exit_code != 0
    assert "at least 12 characters" in short.output
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        assert pr.identity.log_in(username="ops", password=PASSWORD) is not None


def test_a_new_password_ends_the_user_s_sessions(postroom: Postroom) -> None:
    postroom.identity.create_admin(username="alice", password=PASSWORD)
    postroom.identity.create_admin(username="bob", password=PASSWORD)
    opened = postroom.identity.log_in(username="alice", password=PASSWORD)
    other = postroom.identity.log_in(username="bob", password=PASSWORD)
    assert opened is not None
    assert other is not None
    with postroom.engine.begin() as conn:
        postroom.identity.users.set_password(conn, username="alice", password=PASSWORD + "!")
    assert postroom.identity.session(opened[0]) is None
    assert postroom.identity.session(other[0]) is not None  # only hers
    with postroom.engine.begin() as conn, pytest.raises(NotFoundError):
        postroom.identity.users.set_password(conn, username="nobody", password="short")
