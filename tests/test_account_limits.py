"""Account limits across agents: messages per minute and connections; a limit only delays."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.accounts import EmailAccount
from postroom.accounts.limits import GRAPH_MAILBOX, OFFICE365_SMTP, Limits
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.outbox import OutboxStatus
from tests.conftest import make_settings
from tests.fake_microsoft import MAILBOX, microsoft_server
from tests.fakes import smtp_server
from tests.graphkit import graph_postroom
from tests.test_delivery import account


def run_agents(pr: Postroom, count: int) -> None:
    """``count`` agents at once, each in its own thread and loop, until nothing is due."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            asyncio.run(asyncio.wait_for(pr.agent().run(until_idle=True), 60))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def queue(pr: Postroom, n: int) -> list[int]:
    return [pr.send(to=[f"r{i}@example.net"], subject=f"m{i}", body="b") for i in range(n)]


def test_messages_per_minute_hold_across_agents(database_url: str) -> None:
    settings = make_settings(database_url, batch_size=4)
    with smtp_server() as srv, Postroom(settings) as pr:
        limits = {"messages_per_minute": 5}
        pr.apply({"accounts": [account(srv.port, limits=limits)]})
        ids = queue(pr, 12)
        start = utcnow()
        run_agents(pr, 2)
        assert len(srv.sink.received) == 5  # one minute's worth, whichever agent sent it
        waiting = [pr.outbox_entry(i) for i in ids if pr.outbox_entry(i).status != "sent"]
        assert len(waiting) == 7
        for entry in waiting:  # delayed, not failed, not counted
            assert entry.status is OutboxStatus.QUEUED
            assert entry.attempts == 0
            assert start + timedelta(seconds=59) <= entry.next_attempt_at
            assert entry.next_attempt_at <= utcnow() + timedelta(seconds=60)
        # A minute later (the window and the delays moved back instead of waiting for it):
        with pr.engine.begin() as conn:
            past = utcnow() - timedelta(seconds=61)
            conn.execute(update(tables.account_budgets).values(window_start=past))
            conn.execute(
                update(tables.outbox)
                .where(tables.outbox.c.status == "queued")
                .values(next_attempt_at=utcnow())
            )
        run_agents(pr, 2)
        assert len(srv.sink.received) == 10
        assert len({r.raw for r in srv.sink.received}) == 10  # never one twice


def test_max_connections_hold_across_agents(database_url: str) -> None:
    settings = make_settings(database_url, batch_size=6, connections_per_account=4)
    with smtp_server() as srv, Postroom(settings) as pr:
        srv.sink.data_delay = 0.05  # a slow server, so that sends overlap
        pr.apply({"accounts": [account(srv.port, limits={"max_connections": 2})]})
        queue(pr, 36)
        for _ in range(20):  # an agent that finds no free slot puts its batch off by 1 s
            run_agents(pr, 3)  # 3 agents x 4 connections each would allow 12 at once
            if len(srv.sink.received) == 36:
                break
            time.sleep(1.05)
        assert len(srv.sink.received) == 36
        assert srv.sink.max_in_data == 2
        with pr.engine.connect() as conn:
            assert conn.execute(tables.account_slots.select()).all() == []  # all given back
        assert {e.status for e in pr.outbox(limit=100)} == {OutboxStatus.SENT}


def test_without_limits_connections_are_not_capped(tmp_path: object) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/p.db", batch_size=12, connections_per_account=4)
    with smtp_server() as srv, Postroom(settings) as pr:
        srv.sink.data_delay = 0.05
        pr.apply({"accounts": [account(srv.port)]})
        queue(pr, 12)
        run_agents(pr, 1)
        assert srv.sink.max_in_data == 4  # the check above is not vacuous


def test_immediate_delivery_respects_the_budget(tmp_path: object) -> None:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path}/p.db")) as pr:
        pr.apply({"accounts": [account(srv.port, limits={"messages_per_minute": 2})]})
        ids = queue(pr, 3)
        pr.deliver_now(ids)
        assert len(srv.sink.received) == 2
        assert [pr.outbox_entry(i).status for i in ids].count(OutboxStatus.QUEUED) == 1


def test_presets_and_explicit_limits() -> None:
    o365 = EmailAccount(name="A", provider="office365", address="a@example.com")
    assert o365.effective_limits == OFFICE365_SMTP
    mine = o365.model_copy(update={"limits": Limits(messages_per_minute=10)})
    assert mine.effective_limits == Limits(max_connections=3, messages_per_minute=10)
    custom = EmailAccount(name="B", address="b@example.com", host="smtp.example.com")
    assert custom.effective_limits == Limits()
    assert not custom.effective_limits.any
    graph = EmailAccount(name="C", protocol="graph", address="c@example.com", auth_profile="P")
    assert graph.effective_limits == GRAPH_MAILBOX
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Limits(max_connections=0)


def test_stored_limits_are_read_as_the_account_says(tmp_path: Path) -> None:
    """What agents read on every claim (three columns) equals the whole account's answer."""
    accounts: list[dict[str, Any]] = [
        {"name": "O365", "provider": "office365", "address": "a@example.com", "password": "pw"},
        {
            "name": "O365mine",
            "provider": "office365",
            "address": "b@example.com",
            "limits": {"messages_per_minute": 10},
        },
        {"name": "Custom", "address": "c@example.com", "host": "smtp.example.com"},
        {
            "name": "Capped",
            "address": "d@example.com",
            "host": "smtp.example.com",
            "limits": {"max_connections": 2},
        },
    ]
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'l.db'}")) as pr:
        pr.apply({"accounts": accounts})
        with pr.engine.connect() as conn:
            for a in accounts:
                whole = pr.account_store.get(conn, a["name"]).effective_limits
                assert pr.account_store.limits(conn, a["name"]) == whole
            assert pr.account_store.limits(conn, "O365") == OFFICE365_SMTP
            assert pr.account_store.limits(conn, "O365mine") == Limits(
                max_connections=3, messages_per_minute=10
            )
            with pytest.raises(NotFoundError):
                pr.account_store.limits(conn, "Nobody")


def test_graph_mailbox_takes_four_requests_at_most_across_agents(tmp_path: Path) -> None:
    # Three Postroom instances on one database: three agents with their own in-process
    # gates, so only the database's connection slots can hold them to four together.
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with microsoft_server() as ms:
        ms.graph_delay = 0.1  # requests overlap
        with ExitStack() as stack:
            instances = [
                stack.enter_context(
                    graph_postroom(url, ms, batch_size=6, connections_per_account=8)
                )
                for _ in range(3)
            ]
            for i in range(36):
                instances[0].send(to=[f"r{i}@example.org"], subject=f"m{i}", body="<p>b</p>")
            for _ in range(20):  # an agent that finds no free slot puts its batch off by 1 s
                threads = [threading.Thread(target=run_agents, args=(pr, 1)) for pr in instances]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
                if instances[0].outbox_counts().get(OutboxStatus.SENT, 0) == 36:
                    break
                time.sleep(1.05)
            assert instances[0].outbox_counts().get(OutboxStatus.SENT, 0) == 36
        assert ms.max_in_flight[MAILBOX] == 4  # reached, never exceeded
