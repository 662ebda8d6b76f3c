"""A degraded agent, and why, as the CLI, the Studio, the API and /metrics show it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from postroom import Postroom
from postroom.agent import AgentStats
from postroom.agent.beat import AgentRow
from postroom.agent.health import Health
from postroom.cli import app
from postroom.outbox import OutboxStore
from tests.apikit import http, issue_tokens, mounted, serve
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import log_in, studio_client

REASON = "database unavailable: database or disk is full"


def degraded_agent(pr: Postroom) -> str:
    """An agent row written as a degraded agent writes it: three errors in a row."""
    row = AgentRow(engine=pr.engine, outbox=OutboxStore(), agent_id="host:1:abc", lease=60)
    row.register()
    health = Health()
    for _ in range(3):
        health.degrade(REASON)
    row.beat(health, AgentStats(sent=7))
    return row.id


def test_a_degraded_agent_is_shown_with_its_reason_everywhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    # A long beat interval: the row is written once, and a loaded machine may take
    # seconds to get through the CLI, the Studio and the API; it must not read as stale.
    with Postroom(make_settings(url, heartbeat_interval=60)) as pr:
        agent_id = degraded_agent(pr)
        [info] = pr.agents()
        assert (info.state, info.reason, info.db_errors, info.sent) == ("degraded", REASON, 3, 7)

        listed = CliRunner().invoke(
            app, ["--database-url", url, "agent", "list"], env={"POSTROOM_SECRET_KEY": TEST_KEY}
        )
        assert listed.exit_code == 0, listed.output
        assert f"{agent_id} degraded: {REASON} (3 database errors in a row)\n" in listed.output

        with studio_client(pr) as client:
            log_in(client)
            page = client.get("/agents").text
        assert "s-degraded" in page
        assert f"{REASON} (3 database errors in a row)" in page
        assert f'Pause<span class="sr"> agent {agent_id}' in page  # degraded: can be paused

        tokens = issue_tokens(pr)
        with serve(mounted(pr)) as base, http(base) as c:
            [view] = c.get("/api/v1/agents", headers=tokens.admin).json()
            metrics = c.get("/api/v1/metrics", headers=tokens.admin).text
        assert (view["state"], view["reason"], view["db_errors"]) == ("degraded", REASON, 3)
        assert 'postroom_agents{state="degraded"} 1.0' in metrics
        assert f'postroom_agent_database_errors{{agent="{agent_id}"}} 3.0' in metrics
