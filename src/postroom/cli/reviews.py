"""``postroom reviews``: emails waiting for their reviewer."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cli.common import (
    JsonOption,
    console,
    count_option,
    id_argument,
    opened,
    print_json,
    run_command,
    table,
)
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError
from postroom.reviews.edits import MAX_BODY
from postroom.reviews.models import ReviewState
from postroom.reviews.service import ReviewDetail
from postroom.text import decode_utf8

reviews_app = typer.Typer(
    help="Emails waiting for their reviewer: list, show, approve, reject.", no_args_is_help=True
)

ReviewId = Annotated[int, id_argument("The review's id (reviews list shows them)", metavar="ID")]


def _by() -> str:
    """Who decides from the command line: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "cli:unknown"


def _detail_json(detail: ReviewDetail) -> dict[str, Any]:
    # The API's models load the web stack; only --json needs them.
    from postroom.api.schemas.reviews import ReviewDetailView  # noqa: PLC0415

    return ReviewDetailView.of_detail(detail, now=utcnow()).model_dump(mode="json")


def _read(path: Path | None, *, field: str) -> str | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{field}: cannot read {path}: {exc.strerror}") from None
    if len(data) > 4 * MAX_BODY:
        raise ConfigurationError(f"{field}: {path} is larger than {MAX_BODY} characters")
    return decode_utf8(data, source=str(path))


@reviews_app.command("list")
def list_reviews(
    state: Annotated[
        ReviewState | None, typer.Option("--state", help="Only reviews in this state")
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option(help="An operator id, party role or address")
    ] = None,
    case: Annotated[str | None, typer.Option("--case", help="Only this case's reviews")] = None,
    limit: Annotated[int, count_option("At most this many")] = 50,
    json: JsonOption = False,
) -> None:
    """List reviews, pending first, then newest first."""

    def body() -> None:
        with opened() as postroom:
            found = postroom.reviews.search(
                state=state, reviewer=reviewer, case_id=case, limit=limit
            )
        now = utcnow()
        if json:
            from postroom.api.schemas.reviews import ReviewView  # noqa: PLC0415

            print_json([ReviewView.of(r, now=now).model_dump(mode="json") for r in found])
            return
        if not found:
            console.print("no reviews" + (" match" if state or reviewer or case else ""))
            return
        rows = table("id", "state", "case", "step", "reviewer", "requested", "subject")
        for r in found:
            flag = " (overdue)" if r.overdue(now) else ""
            rows.add_row(
                str(r.id),
                f"{r.state}{flag}",
                r.case_id or "",
                r.step,
                r.reviewer.describe(),
                f"{r.requested_at:%Y-%m-%d %H:%M}",
                r.sent_text.subject,
            )
        console.print(rows)

    run_command(body)


@reviews_app.command("show")
def show_review(review_id: ReviewId, json: JsonOption = False) -> None:
    """Show a review: the email as it would be sent, who receives it, the decision."""

    def body() -> None:
        with opened() as postroom:
            detail = postroom.reviews.detail(review_id)
        if json:
            print_json(_detail_json(detail))
            return
        _print_detail(detail)

    run_command(body)


@reviews_app.command("approve")
def approve_review(
    review_id: ReviewId,
    subject: Annotated[str | None, typer.Option(help="A changed subject")] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html-file", help="A changed HTML body (UTF-8 file)")
    ] = None,
    text_file: Annotated[
        Path | None,
        typer.Option("--text-file", help="A changed text part (else derived from a new HTML)"),
    ] = None,
) -> None:
    """Approve: the email is queued, with your changes (sent as written, not a template)."""

    def body() -> None:
        html = _read(html_file, field="html")
        text = _read(text_file, field="text")
        with opened() as postroom:
            review = postroom.reviews.approve(
                review_id, by=_by(), subject=subject, html=html, text=text
            )
        how = "with your changes" if review.edited else "as composed"
        ids = ", ".join(f"#{i}" for i in review.outbox_ids)
        console.print(f"review #{review.id} approved {how}: outbox {ids} queued")

    run_command(body)


@reviews_app.command("reject")
def reject_review(
    review_id: ReviewId,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the case history)")],
) -> None:
    """Reject: nothing is sent; the reason goes into the case history."""

    def body() -> None:
        with opened() as postroom:
            review = postroom.reviews.reject(review_id, by=_by(), reason=reason)
        console.print(f"review #{review.id} rejected: nothing was sent")

    run_command(body)


def _print_detail(detail: ReviewDetail) -> None:
    r = detail.review
    text = r.sent_text
    lines = [
        f"review #{r.id}: {r.state}" + (" (overdue)" if r.overdue(utcnow()) else ""),
        f"case: {r.case_id or '-'}, step '{r.step}'",
        f"reviewer: {r.reviewer.describe()}",
        f"requested: {r.requested_at:%Y-%m-%d %H:%M} UTC",
    ]
    if detail.escalation:
        lines.append(f"escalation: {detail.escalation.describe()}")
    if r.decided_at:
        lines.append(f"decided: {r.decided_at:%Y-%m-%d %H:%M} UTC by {r.decided_by or '-'}")
    if r.reason:
        lines.append(f"reason: {r.reason}")
    lines.append(f"outbox: {', '.join(f'#{i}' for i in r.outbox_ids)}")
    lines.append(f"account: {detail.account or '-'}")
    for name, boxes in (("to", detail.to), ("cc", detail.cc), ("bcc", detail.bcc)):
        if boxes:
            lines.append(f"{name}: {', '.join(b.address for b in boxes)}")
    lines += ["", f"subject: {text.subject}", "", text.text.rstrip()]
    if detail.diff:
        lines += ["", "changes:", detail.diff]
    for line in lines:
        console.print(line)
