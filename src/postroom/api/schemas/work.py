"""Cases, emails and agents as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from postroom.accounts.connectivity import ConnectivityReport
from postroom.agent.registry import AgentInfo
from postroom.cases.models import Case
from postroom.outbox import OutboxEntry, OutboxStatus
from postroom.outbox.models import RecipientState
from postroom.outbox.status import Hold, Priority

_STATUS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$"
Address = Annotated[str, Field(min_length=3, max_length=320, examples=["someone@example.com"])]


class CaseCreate(BaseModel):
    """A new case of a case type (named by its class), with its data and its creator."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "class_name": "MyOrg-Mortgage-Work-MortgageRequest",
                    "data": {"applicant": "Zoë Ångström", "amount": 250000},
                    "operator": "alice",
                }
            ]
        },
    )

    class_name: str = Field(
        min_length=1,
        max_length=255,
        description="The case type's class",
        examples=["MyOrg-Mortgage-Work-MortgageRequest"],
    )
    case_type: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        exclude=True,
        description="Deprecated: use class_name (accepted until the next release)",
        json_schema_extra={"deprecated": True},
    )
    data: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = Field(None, min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, data: Any) -> Any:
        return renamed(data, old="case_type", new="class_name")

    @property
    def deprecated_names(self) -> list[str]:
        """The deprecated names this request used (answered with a Deprecation header)."""
        return ["case_type"] if "case_type" in self.model_fields_set else []


def renamed(data: Any, *, old: str, new: str) -> Any:
    """``data`` with a deprecated ``old`` name's value under ``new`` (both given: they agree)."""
    if not isinstance(data, dict) or old not in data:
        return data
    if new in data and data[new] != data[old]:
        raise ValueError(f"{old} is the deprecated name of {new}: give {new} only")
    return {**data, new: data[old]}


def deprecated(response: Response, names: list[str]) -> None:
    """Say in the answer that the request used deprecated names, and which."""
    if names:
        response.headers["Deprecation"] = "true"
        response.headers["X-Deprecated-Names"] = ", ".join(names)


class CaseView(Case):
    """A case with its parties, attachments and history; ``class_name`` names its type."""

    class_name: str = Field(description="The case type's class")
    case_type: str = Field(
        description="Deprecated: the same as class_name (kept until the next release)",
        json_schema_extra={"deprecated": True},
    )

    warnings: list[str] = Field(
        default_factory=list,
        description="Emails this change was to send but could not (e.g. a work party "
        "without an address); the change itself stands",
    )

    @classmethod
    def of(cls, case: Case, *, warnings: list[str] | None = None) -> CaseView:
        values = {**dict(case), "class_name": case.case_type, "warnings": warnings or []}
        return cls.model_validate(values)


class StatusChange(BaseModel):
    """A case's new status; entering it fires the case type's steps for it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "Resolved-Completed", "operator": "alice"}]},
    )

    status: str = Field(pattern=_STATUS_PATTERN, examples=["Resolved-Completed"])
    operator: str | None = Field(None, min_length=1, max_length=255)


class BatchEmail(BaseModel):
    """One email of a batch: recipients and a correspondence name or inline content."""

    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=100)
    cc: list[Address] = Field(default_factory=list, max_length=100)
    bcc: list[Address] = Field(default_factory=list, max_length=100)
    subject: str | None = Field(None, max_length=998, description="Sent as written")
    body: str | None = Field(
        None, description="HTML, sent as written; the text part is derived from it"
    )
    template: bool = Field(
        False,
        description="Render subject and body as templates (Jinja: {{ case.id }}, "
        "{{ account.name }}...); by default they are sent as written",
    )
    correspondence: str | None = Field(None, max_length=255)
    language: str | None = Field(
        None,
        max_length=35,
        description="The correspondence's translation to send (de, fr-CH…) and the language "
        "dates and amounts are formatted in; default: its own language",
        examples=["de"],
    )
    priority: Priority = Field(Priority.NORMAL, description="Due emails go out high first")
    send_after: AwareDatetime | None = Field(
        None, description="Scheduled send: not before this time (with a time zone)"
    )
    expires_at: AwareDatetime | None = Field(
        None, description="Never sent at or after this time; then its status is 'expired'"
    )


class EmailCreate(BatchEmail):
    """An ad-hoc email for a case (its class's account) or for a class."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": ["customer@example.com"],
                    "subject": "Your request",
                    "body": "<p>We received it.</p>",
                    "class_name": "MyOrg-Mortgage-Work-MortgageRequest",
                },
                {
                    "to": ["customer@example.com"],
                    "subject": "Your case {{ case.id }}",
                    "body": "<p>We received it.</p>",
                    "case_id": "M-1",
                    "template": True,
                },
            ]
        },
    )

    class_name: str | None = Field(
        None, max_length=255, description="Class whose account sends when there is no case"
    )
    case_id: str | None = Field(None, max_length=64)


MAX_BATCH = 1000  # one request, one transaction: large enough to matter, small to post


class EmailBatchCreate(BaseModel):
    """Many ad-hoc emails from one class's account, queued together or not at all."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "class_name": "MyOrg-Notices",
                    "emails": [
                        {"to": ["a@example.com"], "correspondence": "Annual statement"},
                        {"to": ["b@example.com"], "correspondence": "Annual statement"},
                    ],
                }
            ]
        },
    )

    class_name: str = Field("Default", max_length=255, description="Whose account sends")
    emails: list[BatchEmail] = Field(min_length=1, max_length=MAX_BATCH)


class QueuedBatch(BaseModel):
    """The outbox ids of a batch, in the order of its emails (encrypted splits add rows),
    the account that sends them and why."""

    ids: list[int]
    account: str = Field(examples=["Default"], description="The account that sends them")
    account_reason: str = Field(description="Why that account: how the class was resolved")
    warnings: list[str] = Field(
        default_factory=list,
        description="What may not be what was meant, e.g. a class that is no case type",
    )


class RecipientView(BaseModel):
    """One envelope recipient and how far its delivery got.

    After ``accepted`` a delivery report may make it ``bounced``, ``delayed`` or
    ``complained``; ``suppressed`` recipients were never attempted (``text`` says why).
    """

    address: str
    state: RecipientState
    code: int | None = Field(description="The last SMTP reply code, or the report's")
    text: str = Field(description="The server's reply, the report's diagnostic, or why not sent")
    enhanced: str | None = Field(None, description="RFC 3463 status when known, e.g. 5.1.1")


class EmailView(BaseModel):
    """An outbox email: its status, attempts and the server's last reply."""

    id: int
    message_id: str
    case_id: str | None
    account: str | None
    subject: str
    mail_from: str
    recipients: list[RecipientView]
    status: OutboxStatus
    hold: Hold | None
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_enhanced: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    priority: Priority
    expires_at: datetime | None
    correspondence: str | None = Field(
        None, description="The correspondence it was rendered from; null for ad-hoc text"
    )
    correspondence_version: int | None = Field(
        None, description="That correspondence's version (GET /correspondence/{name}/versions)"
    )
    language: str | None = Field(None, examples=["de"], description="The language of its text")

    @classmethod
    def of(cls, entry: OutboxEntry) -> EmailView:
        fields = {name: getattr(entry, name) for name in cls.model_fields if name != "recipients"}
        recipients = [RecipientView(**r.to_json()) for r in entry.recipients]
        return cls(**fields, recipients=recipients)


class QueuedEmails(BaseModel):
    """What an ad-hoc email became (one outbox row, or two when only some are encrypted),
    the account that sends it and why."""

    ids: list[int]
    emails: list[EmailView]
    account: str = Field(examples=["Claims"], description="The account that sends it")
    account_reason: str = Field(
        examples=["class MyOrg-Claims-Work-Claim: matches class MyOrg-Claims"],
        description="Why that account: how the class was resolved",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What may not be what was meant, e.g. a class that is no case type",
    )


class EmailPage(BaseModel):
    """One page of emails, newest first; ``next`` is the following page's URL."""

    items: list[EmailView]
    next: str | None = Field(None, description="URL of the next page; null on the last")


class AgentView(BaseModel):
    """A sender agent's heartbeat row."""

    id: str
    host: str
    pid: int
    state: str = Field(examples=["running", "degraded", "stale", "stopped"])
    reason: str | None = Field(None, description="Why a degraded agent cannot work")
    db_errors: int = Field(0, description="Database errors met in a row")
    paused: bool
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None
    sent: int
    failed: int

    @classmethod
    def of(cls, agent: AgentInfo) -> AgentView:
        return cls(**{name: getattr(agent, name) for name in cls.model_fields})


class StepView(BaseModel):
    """One stage of a connectivity test."""

    name: str
    ok: bool
    detail: str
    explanation: str


class ConnectivityView(BaseModel):
    """The result of testing an account's connection as the agent would connect."""

    account: str
    ok: bool
    steps: list[StepView]

    @classmethod
    def of(cls, account: str, report: ConnectivityReport) -> ConnectivityView:
        steps = [
            StepView(name=s.name, ok=s.ok, detail=s.detail, explanation=s.explanation)
            for s in report.steps
        ]
        return cls(account=account, ok=report.ok, steps=steps)


class DatabaseHealth(BaseModel):
    """Whether the database answered the health check."""

    reachable: bool
    error: str | None = Field(None, description="The driver's first line when it did not")


class TaskHealth(BaseModel):
    """One background task of the service (the sender agent, the dev inbox...)."""

    name: str = Field(examples=["agent"])
    state: str = Field(examples=["running", "degraded", "restarting", "starting", "stopped"])
    reason: str | None = Field(None, description="Why it is degraded or restarting")
    consecutive_db_errors: int = 0
    restarts: int = Field(0, description="How often it ended unexpectedly and was restarted")


class Health(BaseModel):
    """The service, its database and its background tasks (HTTP 503 unless all work)."""

    status: str = Field(
        examples=["ok"],
        description="ok; degraded (a task cannot work); unavailable (no database)",
    )
    database: DatabaseHealth
    tasks: list[TaskHealth] = Field(default_factory=list)
