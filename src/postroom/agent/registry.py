"""What operators see of the agents: their heartbeat rows, with a derived liveness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """One agent's heartbeat row; ``state`` is ``stale`` when it stopped beating.

    ``reason`` says why a ``degraded`` agent cannot work; ``db_errors`` counts the
    database errors it met in a row (0 once the database answers again).
    """

    id: str
    host: str
    pid: int
    state: str
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None
    sent: int
    failed: int
    paused: bool = False
    reason: str | None = None
    db_errors: int = 0


def list_agents(
    conn: Connection, *, stale_after: float, limit: int = 100, agent_id: str | None = None
) -> list[AgentInfo]:
    """The newest agents first; a running agent silent for ``stale_after`` seconds is stale."""
    t = tables.agents
    cutoff = utcnow() - timedelta(seconds=stale_after)
    query = select(t).order_by(t.c.started_at.desc()).limit(limit)
    if agent_id is not None:
        query = query.where(t.c.id == agent_id)
    rows = conn.execute(query)
    agents = []
    for r in rows:
        # A killed agent cannot say so; silence past a few beats is how it shows.
        silent = r.state in ("running", "degraded") and r.last_beat_at < cutoff
        state = "stale" if silent else r.state
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
                paused=r.paused,
                reason=r.state_reason,
                db_errors=r.db_errors,
            )
        )
    return agents


def set_paused(conn: Connection, agent_id: str, *, paused: bool) -> None:
    """Pause or resume an agent: it stops claiming (or starts again) at its next claim."""
    t = tables.agents
    if conn.execute(update(t).where(t.c.id == agent_id).values(paused=paused)).rowcount == 0:
        raise NotFoundError(f"no agent with id {agent_id!r}")


def is_paused(conn: Connection, agent_id: str) -> bool:
    t = tables.agents
    return bool(conn.execute(select(t.c.paused).where(t.c.id == agent_id)).scalar())
