"""Reading and saving a correspondence from its Studio pages (text, translations, images)."""

from __future__ import annotations

from fastapi import Request

from postroom.correspondence import Correspondence
from postroom.web.session import Auth, postroom_of


def load_correspondence(request: Request, name: str) -> Correspondence:
    """The stored record (NotFoundError, the Studio's 404 page, when there is none)."""
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        return pr.correspondence_store.get(conn, name)


def save_correspondence(request: Request, auth: Auth, record: Correspondence) -> str:
    """Save ``record`` as apply does, as a version saved by the Studio user; returns what
    changed (``created``, ``updated``, ``unchanged``)."""
    report = postroom_of(request).apply(
        {"correspondence": [record.model_dump(mode="json", exclude_none=True)]},
        by=f"studio:{auth.username}",
    )
    [(_, _, change)] = report.changes
    return str(change)
