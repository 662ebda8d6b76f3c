"""Operations: health, metrics, agents and account connectivity tests."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from postroom.api.auth import admin
from postroom.api.metrics import registry_for
from postroom.api.problems import problem_responses
from postroom.api.schemas.work import AgentView, ConnectivityView, Health
from postroom.app import Postroom


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter()
    registry = registry_for(postroom)
    guarded = {"dependencies": [admin], "responses": problem_responses(401, 403)}

    @api.get("/healthz", tags=["operations"], responses=problem_responses(503))
    def healthz() -> Health:
        """Public: the service answers and its database does (503 when it does not)."""
        with postroom.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Health(status="ok")

    @api.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={**problem_responses(401, 403), 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        dependencies=[admin],
    )
    def metrics() -> Response:
        """Prometheus text format: outbox emails by status, agents by state."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/agents", tags=["agents"], **guarded)  # type: ignore[arg-type]
    def list_agents() -> list[AgentView]:
        return [AgentView.of(a) for a in postroom.agents()]

    @api.post("/agents/{agent_id}/pause", tags=["agents"], **guarded)  # type: ignore[arg-type]
    def pause_agent(agent_id: str) -> AgentView:
        """Stop the agent claiming emails (it finishes what it holds), wherever it runs."""
        return AgentView.of(postroom.pause_agent(agent_id, paused=True))

    @api.post("/agents/{agent_id}/resume", tags=["agents"], **guarded)  # type: ignore[arg-type]
    def resume_agent(agent_id: str) -> AgentView:
        return AgentView.of(postroom.pause_agent(agent_id, paused=False))

    @api.post("/accounts/{name}/test", tags=["accounts"], **guarded)  # type: ignore[arg-type]
    def test_account(name: str) -> ConnectivityView:
        """Connect as the agent would (SMTP stages or Graph token) and report each stage."""
        return ConnectivityView.of(name, postroom.test_account(name))

    return api
