"""Agents: running agents with their heartbeats and throughput; pause and resume."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.agent.registry import AgentInfo
from postroom.web.render import page, redirect
from postroom.web.session import Form, LoggedIn, postroom_of

router = APIRouter()


def per_minute(agent: AgentInfo) -> float:
    """Emails handled per minute over the agent's life so far."""
    end = agent.stopped_at or agent.last_beat_at
    minutes = max((end - agent.started_at).total_seconds() / 60, 1 / 60)
    return (agent.sent + agent.failed) / minutes


@router.get("/agents")
def list_agents(request: Request, auth: LoggedIn) -> Response:
    agents = postroom_of(request).agents()
    return page(
        request,
        "agents.html",
        auth,
        title="Agents",
        agents=agents,
        rates={a.id: per_minute(a) for a in agents},
    )


def _set(request: Request, agent_id: str, *, paused: bool) -> Response:
    postroom_of(request).pause_agent(agent_id, paused=paused)
    verb = "paused" if paused else "resumed"
    return redirect(request, "/agents", f"Agent {agent_id} {verb}.")


@router.post("/agents/{agent_id}/pause")
def pause(request: Request, auth: LoggedIn, form: Form, agent_id: str) -> Response:
    return _set(request, agent_id, paused=True)


@router.post("/agents/{agent_id}/resume")
def resume(request: Request, auth: LoggedIn, form: Form, agent_id: str) -> Response:
    return _set(request, agent_id, paused=False)
