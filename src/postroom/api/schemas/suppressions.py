"""The suppression list as the API shows and takes it (``suppressions list --json`` too)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from postroom.suppression import Suppression, SuppressionReason

_EXAMPLE: dict[str, Any] = {
    "address": "jane@example.net",
    "account": "MyOrg-Mortgage-Work",
    "reason": "hard_bounce",
    "detail": "550 5.1.1 The email account that you tried to reach does not exist",
    "description": "suppressed for account MyOrg-Mortgage-Work since 2026-01-05: hard bounce "
    "(550 5.1.1 The email account that you tried to reach does not exist)",
    "created_at": "2026-01-05T10:14:03Z",
    "created_by": None,
    "outbox_id": 41,
    "inbound_id": 17,
}


class SuppressionView(BaseModel):
    """An address Postroom does not send to, for one account or for every account."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [_EXAMPLE]})

    address: str = Field(description="In lower case: it holds however an email spells it")
    account: str | None = Field(description="The account it holds for; null: every account")
    reason: SuppressionReason = Field(
        description="hard_bounce, soft_bounces and complaint are automatic; manual by hand"
    )
    detail: str = Field(description="The report's status and diagnostic, or the admin's note")
    description: str = Field(description="What a suppressed recipient's text says")
    created_at: datetime
    created_by: str | None = Field(description="Who added it by hand (null when automatic)")
    outbox_id: int | None = Field(description="The email whose delivery report suppressed it")
    inbound_id: int | None = Field(description="The received delivery report")

    @classmethod
    def of(cls, entry: Suppression) -> SuppressionView:
        return cls(
            address=entry.address,
            account=None if entry.everywhere else entry.scope,
            reason=entry.reason,
            detail=entry.detail,
            description=entry.describe(),
            created_at=entry.created_at,
            created_by=entry.created_by,
            outbox_id=entry.outbox_id,
            inbound_id=entry.inbound_id,
        )


class SuppressionPage(BaseModel):
    """One page of the suppression list, newest first; ``next`` is the following page's URL."""

    items: list[SuppressionView]
    next: str | None = Field(None, description="URL of the next page; null on the last")


class SuppressionCreate(BaseModel):
    """An address to suppress by hand: for one account, or for every account."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"address": "jane@example.net", "detail": "asked not to be written to by email"}
            ]
        },
    )

    address: str = Field(min_length=1, max_length=320, examples=["jane@example.net"])
    account: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="The account it holds for; left out: every account",
    )
    detail: str = Field("", max_length=500, description="A note: why")


# The columns of the CSV export, in order: the view's fields.
CSV_COLUMNS = tuple(SuppressionView.model_fields)
# A cell a spreadsheet would take for a formula (diagnostics come from remote servers).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_csv(entries: Iterable[Suppression]) -> str:
    """The export: a header row, then one row per entry (the API view's fields)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        view = SuppressionView.of(entry).model_dump(mode="json")
        writer.writerow([_cell(view[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
