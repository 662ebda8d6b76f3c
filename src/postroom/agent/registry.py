"""What operators see of the agents: their heartbeat rows, with a derived liveness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from postroom.db import tables
from postroom.db.types import utcnow


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """One agent's heartbeat row; ``state`` is ``stale`` when it stopped beating."""

    id: str
    host: str
    pid: int
    state: str
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None
    sent: int
    failed: int


def list_agents(conn: Connection, *, stale_after: float, limit: int = 100) -> list[AgentInfo]:
    """The newest agents first; a running agent silent for ``stale_after`` seconds is stale."""
    t = tables.agents
    cutoff = utcnow() - timedelta(seconds=stale_after)
    rows = conn.execute(select(t).order_by(t.c.started_at.desc()).limit(limit))
    agents = []
    for r in rows:
        # A killed agent cannot say so; silence past a few beats is how it shows.
        state = "stale" if r.state == "running" and r.last_beat_at < cutoff else r.state
        agents.append(
            AgentInfo(
                id=r.id,
                host=r.host,
                pid=r.pid,
                state=state,
                started_at=r.started_at,
                last_beat_at=r.last_beat_at,
                stopped_at=r.stopped_at,
                sent=r.sent,
                failed=r.failed,
            )
        )
    return agents
