"""Several agents on one PostgreSQL outbox: every email goes out exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import distinct, func, select

from postroom import Postroom
from postroom.agent import AgentStats
from postroom.db import tables
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import SmtpSink, smtp_server

pytestmark = pytest.mark.postgres

SENDER = "sender@example.com"
EMAILS = 300
BATCH = 10


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[Postroom, Postroom]]:
    a = Postroom(make_settings(postgres_url, batch_size=BATCH))
    b = Postroom(make_settings(postgres_url, batch_size=BATCH))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def fill(pr: Postroom, port: int) -> set[str]:
    """Configure the account and queue ``EMAILS`` emails; returns their Message-IDs."""
    pr.apply(
        {
            "accounts": [
                {
                    "name": "Default",
                    "address": SENDER,
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                }
            ]
        }
    )
    for i in range(EMAILS):
        pr.send(to=[f"user{i}@example.net"], subject=f"n{i}", body="Body.", class_name="Default")
    ids = {e.message_id for e in pr.outbox(limit=EMAILS + 10)}
    assert len(ids) == EMAILS
    return ids


def assert_each_sent_once(pr: Postroom, sink: SmtpSink, message_ids: set[str]) -> None:
    received = Counter(r.message["Message-ID"] for r in sink.received)
    duplicates = {m: n for m, n in received.items() if n > 1}
    assert duplicates == {}
    assert set(received) == message_ids
    assert pr.outbox_counts()[OutboxStatus.SENT] == EMAILS
    assert sink.data_commands == EMAILS


def hold_first_data_until_two_claims(pr: Postroom, sink: SmtpSink) -> None:
    """Hold the first DATA until two agents each hold a claim, so both get work.

    The hook runs in the server's thread; it gives up waiting after 20 s.
    """
    released = threading.Event()
    t = tables.outbox

    def holders() -> int:
        with pr.engine.connect() as conn:
            query = select(func.count(distinct(t.c.lease_owner))).where(
                t.c.status == OutboxStatus.SENDING.value
            )
            return int(conn.execute(query).scalar_one())

    def hook() -> None:
        if released.is_set():
            return
        deadline = time.monotonic() + 20
        while holders() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        released.set()

    sink.on_data = hook


def test_two_agents_in_one_process_share_the_queue(pair: tuple[Postroom, Postroom]) -> None:
    a, b = pair
    sink = SmtpSink()
    hold_first_data_until_two_claims(a, sink)
    with smtp_server(sink) as srv:
        message_ids = fill(a, srv.port)

        async def both() -> list[AgentStats]:
            return list(
                await asyncio.gather(
                    a.agent(agent_id="agent-a").run(until_idle=True),
                    b.agent(agent_id="agent-b").run(until_idle=True),
                )
            )

        stats_a, stats_b = asyncio.run(both())

    assert_each_sent_once(a, sink, message_ids)
    assert stats_a.sent > 0
    assert stats_b.sent > 0
    assert stats_a.sent + stats_b.sent == EMAILS
    assert stats_a.failed == stats_b.failed == 0


def agent_command() -> list[str]:
    exe = Path(sys.executable).parent / "postroom"
    assert exe.exists(), f"console script not installed at {exe}"
    # One agent per process: a SIGKILL in the chaos tests hits the agent holding the
    # leases, not a supervisor whose workers would stop cleanly (see test_agent_workers).
    return [str(exe), "agent", "run", "--workers", "1", "--until-idle"]


def test_two_agent_processes_share_the_queue(postgres_url: str, tmp_path: Path) -> None:
    sink = SmtpSink()
    with Postroom(make_settings(postgres_url)) as pr, smtp_server(sink) as srv:
        hold_first_data_until_two_claims(pr, sink)
        message_ids = fill(pr, srv.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
        env.update(
            POSTROOM_DATABASE_URL=postgres_url,
            POSTROOM_SECRET_KEY=TEST_KEY,
            POSTROOM_BATCH_SIZE=str(BATCH),
            POSTROOM_POLL_INTERVAL="0.05",
            POSTROOM_BACKOFF_BASE="0",
            POSTROOM_BACKOFF_MAX="0",
        )
        logs = [tmp_path / f"agent{n}.log" for n in (1, 2)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for log in logs:
                with log.open("wb") as out:
                    procs.append(
                        subprocess.Popen(
                            agent_command(), env=env, stdout=out, stderr=subprocess.STDOUT
                        )
                    )
            codes = [p.wait(timeout=25) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
        output = "\n".join(log.read_text(errors="replace") for log in logs)
        assert codes == [0, 0], output

        assert_each_sent_once(pr, sink, message_ids)
        with pr.engine.connect() as conn:
            agents: list[Any] = list(conn.execute(select(tables.agents)))
    assert len(agents) == 2
    assert {a.pid for a in agents} == {p.pid for p in procs}
    assert all(a.state == "stopped" for a in agents)
    assert all(a.sent > 0 for a in agents), [(a.pid, a.sent) for a in agents]
    assert sum(a.sent for a in agents) == EMAILS
