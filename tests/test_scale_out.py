"""Scale-out on PostgreSQL: four agent processes, counted at the sink by Message-ID.

With every agent alive nothing is sent twice. When one is killed (SIGKILL) mid-run,
every message is still delivered once its lease expires, and the only duplicates are
messages that agent had in flight: at most one batch. The count is reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.cases.emails import EmailRequest
from postroom.cases.models import Recipient
from postroom.outbox import OutboxStatus
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import SmtpSink, smtp_server
from tests.test_delivery import account
from tests.test_multi_agent import agent_command

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AGENTS = 4
BATCH = 25
LEASE = 3.0


def enqueue(pr: Postroom, count: int) -> set[str]:
    """``count`` emails composed and written in batches; returns their Message-IDs."""
    ids: set[str] = set()
    for first in range(0, count, 250):
        with pr.engine.begin() as conn:
            composition = pr.composer.batch(conn)
            emails = [
                email
                for n in range(first, min(first + 250, count))
                for email in composition.compose(
                    EmailRequest(
                        to=[Recipient(kind="address", value=f"user{n}@example.net")],
                        subject=f"n{n}",
                        body="<p>Body.</p>",
                    ),
                    class_name="Default",
                ).emails
            ]
            pr.outbox_store.enqueue_many(conn, emails)
            ids.update(e.message_id for e in emails)
    return ids


def wait_for(condition: Callable[[], bool], *, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def agents(url: str, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``AGENTS`` agent processes (no --until-idle); stopped with SIGTERM, or killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(
        POSTROOM_DATABASE_URL=url,
        POSTROOM_SECRET_KEY=TEST_KEY,
        POSTROOM_BATCH_SIZE=str(BATCH),
        POSTROOM_POLL_INTERVAL="0.05",
        POSTROOM_LEASE_SECONDS=str(LEASE),
        POSTROOM_HEARTBEAT_INTERVAL="0.5",
    )
    command = [c for c in agent_command() if c != "--until-idle"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(AGENTS):
            with (logs / f"agent{n}.log").open("wb") as out:
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


class Tally:
    """Message-IDs the sink received, parsed once each as they arrive."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.ids: Counter[str] = Counter()
        self._seen = 0

    def update(self) -> Counter[str]:
        with self.sink.lock:
            new = self.sink.received[self._seen :]
        self._seen += len(new)
        self.ids.update(str(r.message["Message-ID"]) for r in new)
        return self.ids

    def total(self) -> int:
        with self.sink.lock:
            return len(self.sink.received)


def test_four_live_agents_send_each_message_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    count = 2000
    sink = SmtpSink()
    with smtp_server(sink) as srv, Postroom(make_settings(postgres_url)) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        message_ids = enqueue(pr, count)
        tally = Tally(sink)
        with agents(postgres_url, tmp_path) as procs:
            wait_for(lambda: tally.total() >= count, limit=120)
            time.sleep(0.5)  # a duplicate, were there one, would arrive now
        assert [p.returncode for p in procs] == [0] * AGENTS
        received = tally.update()
        assert set(received) == message_ids
        assert max(received.values()) == 1  # zero duplicates
        assert pr.outbox_counts()[OutboxStatus.SENT] == count
        workers = [a for a in pr.agents() if a.sent > 0]
    assert len(workers) == AGENTS, [(a.id, a.sent) for a in pr.agents()]


def test_a_killed_agent_loses_nothing_and_duplicates_at_most_its_batch(
    postgres_url: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    count = 2000
    sink = SmtpSink()
    with smtp_server(sink) as srv, Postroom(make_settings(postgres_url)) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        message_ids = enqueue(pr, count)
        tally = Tally(sink)
        with agents(postgres_url, tmp_path) as procs:
            wait_for(lambda: tally.total() >= count // 4, limit=60)
            victim = procs[0]
            victim.kill()  # SIGKILL: no chance to give its leases back
            assert victim.wait(timeout=10) == -signal.SIGKILL
            wait_for(lambda: len(tally.update()) >= count, limit=120)
            time.sleep(LEASE + 1)  # anything still leased to the dead agent is retried by now
        received = tally.update()
        duplicates = sum(received.values()) - len(received)
        record_property("duplicates_after_kill", duplicates)
        print(f"scale-out: {count} messages, 1 of {AGENTS} agents killed, {duplicates} duplicates")
        assert set(received) == message_ids  # every message delivered
        assert duplicates <= BATCH  # only what the killed agent had in flight
        assert pr.outbox_counts()[OutboxStatus.SENT] == count
        states = {a.pid: a.state for a in pr.agents()}
    assert states[victim.pid] == "stale"  # it could not say it stopped; its silence shows it
