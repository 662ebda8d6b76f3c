"""The dashboard: queue counts, sent and failed per minute, recent emails, agents."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.outbox.activity import activity
from postroom.web.charts import chart
from postroom.web.render import page
from postroom.web.session import LoggedIn, postroom_of

router = APIRouter()
HOURS = (1, 3, 6, 12, 24)
RECENT = 8


@router.get("/")
def dashboard(request: Request, auth: LoggedIn, hours: int = 3) -> Response:
    pr = postroom_of(request)
    hours = hours if hours in HOURS else 3
    with pr.engine.connect() as conn:
        minutes = activity(conn, hours=hours)
    return page(
        request,
        "dashboard.html",
        auth,
        title="Dashboard",
        counts=pr.outbox_counts(),
        chart=chart(minutes),
        hours=hours,
        hour_choices=HOURS,
        agents=pr.agents()[:10],
        holds=pr.holds(),
        recent=pr.outbox(limit=RECENT),
    )
