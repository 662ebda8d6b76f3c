"""The Postroom service: REST API at ``/api/v1``, Admin Studio at ``/``, and the sender agent.

One ASGI application. The agent runs in the same event loop as the web server, as a
supervised task started and stopped by the application's lifespan (restarted if it ever
ends on its own), unless ``run_agent`` is off (agents running elsewhere, on other hosts).
With ``agent_workers``, it runs as that many processes instead, under the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy.engine import make_url

from postroom.agent.workers import Workers
from postroom.api import create_api
from postroom.app import Postroom
from postroom.devinbox.server import DevInbox
from postroom.devinbox.watch import InboxWatch
from postroom.supervisor import Supervisor
from postroom.web import create_studio
from postroom.webhooks.dispatcher import dispatcher_for

log = logging.getLogger(__name__)
# How long a stopping agent may take to finish its batch before it is cancelled.
AGENT_STOP_TIMEOUT = 30.0


def create_app(
    postroom: Postroom,
    *,
    run_agent: bool = True,
    agent_workers: int | None = None,
    run_inbound: bool = True,
    run_webhooks: bool = True,
    inbox_dir: Path | None = None,
    inbox: DevInbox | None = None,
) -> FastAPI:
    """The service's ASGI application on an opened :class:`Postroom`.

    ``inbox``: a started dev inbox to keep listening (``serve --demo``). ``run_inbound``:
    read the accounts' mailboxes here (one listener per account with inbound settings).
    ``run_webhooks``: deliver webhook events here. ``agent_workers``: run the sender
    agent as this many processes (2 or more) rather than in this one.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        supervisor = Supervisor(postroom.background)
        workers: asyncio.Task[object] | None = None
        stop_workers = asyncio.Event()
        if run_agent and agent_workers:
            place = make_url(postroom.settings.database_url).render_as_string(hide_password=True)
            pool = Workers(
                postroom.settings,
                count=agent_workers,
                place=place,
                stop_timeout=AGENT_STOP_TIMEOUT,
            )
            postroom.background.publish("agent", pool.status)
            workers = asyncio.create_task(pool.run(stop=stop_workers), name="agent workers")
            log.info("sender agent started as %d worker processes", agent_workers)
        elif run_agent:
            supervisor.start("agent", postroom.agent)
            log.info("sender agent started")
        if run_inbound:
            # Its own task, so that the health check shows the listeners apart.
            supervisor.start("inbound", postroom.inbound_listeners)
        if run_webhooks:
            # Its own task too: a slow endpoint never holds up email delivery.
            supervisor.start("webhooks", lambda: dispatcher_for(postroom))
        if inbox is not None:
            supervisor.start("dev inbox", lambda: InboxWatch(inbox))
        try:
            yield
        finally:
            stop_workers.set()
            await supervisor.stop(timeout=AGENT_STOP_TIMEOUT)
            if workers is not None:
                await workers  # bounded: the pool kills a worker that overstays its timeout

    app = FastAPI(
        title="Postroom",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the API publishes its own, at /api/v1/openapi.json
    )
    # /api/v1 without its slash would reach the Studio's 404: it leads to the API's index.
    app.add_route("/api/v1", lambda _: RedirectResponse("/api/v1/", status_code=308))
    app.mount("/api/v1", create_api(postroom))
    app.mount("/", create_studio(postroom, inbox_dir=inbox_dir))
    return app
