"""The dev inbox: what the local SMTP sink received, rendered."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from postroom.devinbox.server import InboxMessage, read_inbox
from postroom.web import mail
from postroom.web.render import page
from postroom.web.session import LoggedIn

router = APIRouter()
SHOWN = 200


def _directory(request: Request) -> Path | None:
    directory: Path | None = request.app.state.inbox_dir
    return directory


def _messages(request: Request) -> list[InboxMessage]:
    directory = _directory(request)
    if directory is None or not directory.is_dir():
        return []
    return read_inbox(directory)[-SHOWN:][::-1]


def _find(request: Request, stem: str) -> InboxMessage:
    # Looked up among the listed files, so a crafted name cannot reach outside the folder.
    for message in _messages(request):
        if message.path.stem == stem:
            return message
    raise HTTPException(status_code=404, detail=f"no message {stem} in the dev inbox")


@router.get("/inbox")
def inbox(request: Request, auth: LoggedIn) -> Response:
    rows = []
    for message in _messages(request):
        parsed = mail.parse(message.raw)
        rows.append(
            {
                "stem": message.path.stem,
                "subject": str(parsed.get("Subject", "")),
                "mail_from": message.mail_from,
                "rcpt_tos": message.rcpt_tos,
                "received_at": message.received_at,
            }
        )
    return page(
        request,
        "inbox.html",
        auth,
        title="Dev inbox",
        directory=_directory(request),
        rows=rows,
    )


@router.get("/inbox/{stem}")
def inbox_message(request: Request, auth: LoggedIn, stem: str) -> Response:
    message = _find(request, stem)
    return page(
        request,
        "message.html",
        auth,
        title=str(mail.parse(message.raw).get("Subject", stem)),
        message=mail.view(message.raw),
        body_url=f"/inbox/{stem}/body",
        download_url=None,
        back_url="/inbox",
        back_label="Dev inbox",
        envelope={"from": message.mail_from, "to": ", ".join(message.rcpt_tos)},
    )


@router.get("/inbox/{stem}/body")
def inbox_body(request: Request, auth: LoggedIn, stem: str) -> Response:
    return mail.html_body(_find(request, stem).raw)
