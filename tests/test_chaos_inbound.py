"""An agent killed (SIGKILL) again and again while it ingests 500 messages from Dovecot.

Each message opens a case (a case type takes new mail for desk@example.com). The agent
(``postroom agent run``, inbound batch 5, lease 2 s) is killed at least 50 times, each
time at a seeded random moment once it has ingested more, and started again. At the end
a clean agent finishes: every message is in the database exactly once, opened exactly
one case, and is flagged \\Seen on the server. The figures go to
test-artifacts/inbound.txt.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select

from postroom import Postroom
from postroom.db import tables
from tests.chaoskit import agent_forever, fleet, process_env, report, wait_until
from tests.conftest import make_settings
from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture, raws

pytestmark = [pytest.mark.chaos, pytest.mark.dovecot, pytest.mark.timeout(900)]

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()

MESSAGES = 500
KILLS = 50
BATCH = 5
LEASE = 2.0  # short: a restarted agent (a new owner) waits this out after each kill
SEED = 20261205


def desk_records(mailbox: Mailbox) -> dict[str, object]:
    return {
        "accounts": [mailbox.account_yaml("Desk", poll_seconds=1)],
        "case_types": [
            {
                "class": "Org-Desk-Work-Request",
                "class_group": "Desk",
                "id_prefix": "D-",
                "inbound": {
                    "create_case": True,
                    "address": "desk@example.com",
                    "sender_party": "Customer",
                },
                "parties": {"Customer": "data.customer"},
                "fields": [{"name": "customer", "type": "email"}],
            }
        ],
    }


def counts(engine: Engine) -> dict[str, int]:
    """Rows, distinct keys, settled rows, cases and received .eml attachments."""
    m, c, a = tables.inbound_messages, tables.cases, tables.case_attachments
    with engine.connect() as conn:
        return {
            "rows": conn.scalar(select(func.count()).select_from(m)) or 0,
            "keys": conn.scalar(select(func.count(func.distinct(m.c.dedupe_key)))) or 0,
            "settled": conn.scalar(
                select(func.count()).select_from(m).where(m.c.server_state == "done")
            )
            or 0,
            "cases": conn.scalar(select(func.count()).select_from(c)) or 0,
            "emls": conn.scalar(select(func.count()).select_from(a).where(a.c.name.like("%.eml")))
            or 0,
        }


def test_an_agent_killed_fifty_times_while_it_ingests(mailbox: Mailbox, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    url = f"sqlite:///{tmp_path / 'postroom.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(desk_records(mailbox))
    assert mailbox.append_many(raws(MESSAGES)) == MESSAGES
    env = process_env(
        url, lease_seconds=LEASE, heartbeat_interval=0.5, inbound_batch=BATCH, log_level="INFO"
    )
    engine = create_engine(url)
    started = time.monotonic()
    ingested_at_kill: list[int] = []
    with fleet(agent_forever(), env, tmp_path) as agents:
        agents.start(0)
        for n in range(1, KILLS + 1):
            before = counts(engine)["rows"]
            assert before < MESSAGES, f"all {MESSAGES} ingested after {n - 1} kills: too few"
            # Polled closely: at 50 ms the agent would ingest a dozen between two looks.
            deadline = time.monotonic() + 120
            while counts(engine)["rows"] <= before:
                assert time.monotonic() < deadline, f"no ingest before kill {n}:\n{agents.tail(0)}"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.08))
            ingested_at_kill.append(counts(engine)["rows"])
            agents.kill(0)
            agents.start(0)
        wait_until(
            lambda: counts(engine)["settled"] >= MESSAGES,
            limit=300,
            what="every message ingested and settled after the kills",
            seen=lambda: counts(engine),
        )
        assert agents.exited() == {}, "the agent exited on its own"
        codes = agents.stop()
    seconds = time.monotonic() - started
    final = counts(engine)
    engine.dispose()
    with mailbox.client() as client:
        flags = client.get_flags(client.search("ALL"))
    unseen = [uid for uid, f in flags.items() if b"\\Seen" not in f]
    report(
        "inbound.txt",
        "kills",
        f"{MESSAGES} messages, batch {BATCH}, lease {LEASE} s, seed {SEED}: {agents.kills} "
        f"kills (rows at each: {ingested_at_kill[0]}..{ingested_at_kill[-1]}), {final}, "
        f"{len(unseen)} unseen; {seconds:.0f} s",
    )
    assert agents.kills >= KILLS
    assert codes == {0: 0}
    agents.assert_no_traceback()
    assert final == dict.fromkeys(("rows", "keys", "settled", "cases", "emls"), MESSAGES)
    assert unseen == []
