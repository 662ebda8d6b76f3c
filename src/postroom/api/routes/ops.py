"""Operations: health, metrics, agents and account connectivity tests."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from postroom.agent.health import first_line
from postroom.api.auth import admin
from postroom.api.metrics import registry_for
from postroom.api.problems import RETRY_AFTER_SECONDS, problem_responses
from postroom.api.schemas.work import (
    AgentView,
    ConnectivityView,
    DatabaseHealth,
    Health,
    TaskHealth,
)
from postroom.app import Postroom
from postroom.supervisor import NOT_WORKING


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter()
    registry = registry_for(postroom)
    guarded = {"dependencies": [admin], "responses": problem_responses(401, 403)}

    @api.get("/healthz", tags=["operations"], responses={503: {"model": Health}})
    def healthz(response: Response) -> Health:
        """Public: 200 when the database answers and every background task works, else 503.

        The body says which part fails: the database (``unavailable``), or a task that is
        ``degraded`` (the agent cannot reach the database) or ``restarting``.
        """
        health = service_health(postroom)
        if health.status != "ok":
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return health

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


def service_health(postroom: Postroom) -> Health:
    """The database's answer and each background task's state, as ``/healthz`` shows it."""
    try:
        with postroom.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = DatabaseHealth(reachable=True)
    except SQLAlchemyError as exc:
        database = DatabaseHealth(reachable=False, error=first_line(exc))
    tasks = postroom.background.statuses()
    if not database.reachable:
        status = "unavailable"
    elif any(t.state in NOT_WORKING for t in tasks):
        status = "degraded"
    else:
        status = "ok"
    return Health(
        status=status,
        database=database,
        tasks=[
            TaskHealth(
                name=t.name,
                state=t.state.value,
                reason=t.reason,
                consecutive_db_errors=t.consecutive_db_errors,
                restarts=t.restarts,
            )
            for t in tasks
        ],
    )
