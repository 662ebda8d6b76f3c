"""Agents killed (SIGKILL) at random moments, again and again: nothing lost, few duplicates.

3,000 emails to an SMTP server that takes 40 ms per message; the agent (batch 50, four
connections) is killed at least 40 times, at seeded random moments while it delivers,
and started again each time. Every email arrives; the duplicates, counted at the server
by Message-ID, are what the killed agent had delivered and not yet recorded: outcomes
are committed in small groups as they come, so that is a few emails, not a batch.
The figures go to test-artifacts/kill-test.txt.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom import Postroom
from tests.chaoskit import (
    TimedSink,
    agent_forever,
    duplicates_per_event,
    fleet,
    process_env,
    received_count,
    received_ids,
    report,
    sent_in_outbox,
    wait_for_arrivals,
    wait_until,
)
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_delivery import account
from tests.test_scale_out import Tally, enqueue

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

EMAILS = 3000
KILLS = 40
BATCH = 50
CONNECTIONS = 4
LEASE = 2.5  # short, so that a restarted agent soon takes back what the dead one held
SERVER_DELAY = 0.04  # seconds the server takes per message
SEED = 20261204
SQLITE_MEAN_TARGET = 5.0


@dataclass(frozen=True)
class Figures:
    """What a run of kills cost."""

    kills: int
    duplicates: int
    per_kill: list[int]
    left: int  # emails not yet delivered at the last kill
    seconds: float

    @property
    def mean(self) -> float:
        return self.duplicates / self.kills

    def line(self, agents: int) -> str:
        return (
            f"{EMAILS} emails, {agents} agent(s), batch {BATCH}, {CONNECTIONS} connections, "
            f"server {SERVER_DELAY * 1000:.0f} ms/message, lease {LEASE} s, seed {SEED}: "
            f"{self.kills} kills, {self.duplicates} duplicates, per kill mean {self.mean:.2f} "
            f"max {max(self.per_kill)}; {self.left} left at the last kill; {self.seconds:.0f} s"
        )


def kill_repeatedly(url: str, logs: Path, *, agents: int, longest_pause: float) -> Figures:
    """Run ``agents`` agents, kill a random one ``KILLS`` times, restart it each time.

    Each kill waits until some more emails arrived (the agents are at work), then a
    seeded random pause of up to ``longest_pause`` seconds, so it lands anywhere in a batch.
    """
    rng = random.Random(SEED)
    sink = TimedSink(data_delay=SERVER_DELAY)
    tally = Tally(sink)
    started = time.monotonic()
    with smtp_server(sink) as srv:
        with Postroom(make_settings(url)) as pr:
            pr.apply({"accounts": [account(srv.port)]})
            message_ids = enqueue(pr, EMAILS)
        env = process_env(
            url,
            batch_size=BATCH,
            connections_per_account=CONNECTIONS,
            lease_seconds=LEASE,
            heartbeat_interval=0.5,
            poll_interval=0.05,
        )
        kills: list[float] = []
        left = EMAILS
        with fleet(agent_forever(), env, logs) as fleet_:
            for slot in range(agents):
                fleet_.start(slot)
            for n in range(1, KILLS + 1):
                # More than the dead one's connections could still finish: someone works.
                wait_for_arrivals(
                    sink,
                    received_count(sink) + CONNECTIONS + 1,
                    limit=60,
                    what=f"emails flowing before kill {n}",
                )
                time.sleep(rng.uniform(0, longest_pause))
                left = len(message_ids) - len(tally.update())
                assert left > BATCH, f"only {left} emails left before kill {n}: too few to kill"
                victim = rng.randrange(agents)
                kills.append(time.monotonic())
                fleet_.kill(victim)
                fleet_.start(victim)
            wait_until(
                lambda: tally.update().keys() >= message_ids,
                limit=240,
                what="every email to arrive after the kills",
            )
            wait_until(
                lambda: sent_in_outbox(url) == EMAILS,
                limit=60,
                what="every email recorded as sent",
            )
            assert fleet_.exited() == {}, "an agent exited on its own"
            codes = fleet_.stop()
        order = received_ids(sink)
    assert set(order) == message_ids  # nothing lost
    assert codes == dict.fromkeys(range(agents), 0)
    fleet_.assert_no_traceback()
    return Figures(
        kills=fleet_.kills,
        duplicates=len(order) - len(message_ids),
        per_kill=duplicates_per_event(sink, kills, window=5 * SERVER_DELAY),
        left=left,
        seconds=time.monotonic() - started,
    )


def test_an_agent_killed_forty_times_on_sqlite(tmp_path: Path) -> None:
    figures = kill_repeatedly(
        f"sqlite:///{tmp_path / 'postroom.db'}", tmp_path, agents=1, longest_pause=0.5
    )
    report("kill-test.txt", "sqlite", figures.line(1))
    assert figures.kills >= KILLS
    assert figures.mean <= SQLITE_MEAN_TARGET, figures.line(1)


@pytest.mark.postgres
def test_three_agents_killed_forty_times_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    figures = kill_repeatedly(postgres_url, tmp_path, agents=3, longest_pause=0.3)
    report("kill-test.txt", "postgresql", figures.line(3))
    assert figures.kills >= KILLS
    # At most what the killed agent had not recorded, never more than its batch.
    assert figures.duplicates <= figures.kills * BATCH, figures.line(3)
