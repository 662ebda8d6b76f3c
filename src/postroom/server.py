"""The Postroom service: REST API at ``/api/v1``, Admin Studio at ``/``, and the sender agent.

One ASGI application. The agent runs in the same event loop as the web server, as a
task started and stopped by the application's lifespan, unless ``run_agent`` is off
(agents running elsewhere, on other hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from postroom.api import create_api
from postroom.app import Postroom
from postroom.web import create_studio

log = logging.getLogger(__name__)
# How long a stopping agent may take to finish its batch before it is cancelled.
AGENT_STOP_TIMEOUT = 30.0


def _report_crash(task: asyncio.Task[object]) -> None:
    # A crashed agent must not go unnoticed while the web side keeps answering.
    if not task.cancelled() and task.exception() is not None:
        log.error("sender agent stopped on an error", exc_info=task.exception())


def create_app(
    postroom: Postroom, *, run_agent: bool = True, inbox_dir: Path | None = None
) -> FastAPI:
    """The service's ASGI application on an opened :class:`Postroom`."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not run_agent:
            yield
            return
        stop = asyncio.Event()
        agent = postroom.agent()
        task = asyncio.create_task(agent.run(stop=stop), name=f"agent {agent.id}")
        task.add_done_callback(_report_crash)
        log.info("sender agent %s started", agent.id)
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, AGENT_STOP_TIMEOUT)
            except TimeoutError:
                log.warning("sender agent %s did not stop in time; cancelled", agent.id)
            except Exception:
                log.exception("sender agent %s failed", agent.id)

    app = FastAPI(
        title="Postroom",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the API publishes its own, at /api/v1/openapi.json
    )
    app.mount("/api/v1", create_api(postroom))
    app.mount("/", create_studio(postroom, inbox_dir=inbox_dir))
    return app
