"""Deleting any record from the Studio: a confirmation first, then the catalog's delete.

A delete button posts (with the CSRF token) to ``/<slug>/<key>/delete``; without
``confirm=1`` the answer is a confirmation page, so it works without JavaScript. A
record still in use is refused as the API refuses it, shown as an error notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom import catalog
from postroom.catalog import RecordKind
from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import Form, LoggedIn, postroom_of

router = APIRouter()


def _refused(request: Request, kind: RecordKind, reason: str) -> Response:
    return redirect(request, f"/{kind.slug}", f"Not deleted: {reason}.", level="error")


def _handler(kind: RecordKind) -> Callable[..., Any]:
    def delete_record(request: Request, auth: LoggedIn, form: Form, key: str) -> Response:
        pr = postroom_of(request)
        if not forms.checked(form, "confirm"):
            # Refused before asking: confirming a delete that cannot happen wastes a click.
            reason = catalog.refusal(pr, kind, key)
            if reason is not None:
                return _refused(request, kind, reason)
            return page(
                request,
                "confirm_delete.html",
                auth,
                title=f"Delete {kind.name} {key}?",
                kind=kind,
                key=key,
                action=kind.delete_url(key),
                back=kind.studio_url(key),
            )
        try:
            catalog.delete(pr, kind, key)
        except catalog.InUseError as exc:
            return _refused(request, kind, str(exc))
        return redirect(request, f"/{kind.slug}", f"{kind.label} {key} deleted.")

    delete_record.__name__ = f"delete_{kind.slug.replace('-', '_')}"
    return delete_record


for _kind in catalog.KINDS:
    # The path converter lets a correspondence name hold a "/" (quoted as %2F).
    router.add_api_route(f"/{_kind.slug}/{{key:path}}/delete", _handler(_kind), methods=["POST"])
