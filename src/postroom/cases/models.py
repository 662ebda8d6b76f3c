"""Case types, their work parties and send-email steps, and case records."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from postroom.cases.fields import CaseField, check_fields
from postroom.cases.parties import PARTIES_SCHEMA, PartyLanguage, party_mappings
from postroom.cases.records import AttachmentInfo, Case, HistoryEntry, Party
from postroom.languages import check_language
from postroom.outbox.status import Priority
from postroom.validation import check_address, check_record_name

_PARTY_SOURCE = re.compile(r"^(creator|creator\.reports_to|operator:[A-Za-z0-9_.\-]+|data\.\w+)$")
_STATUS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
INITIAL_STATUS = "New"


def check_status(value: str) -> str:
    if not _STATUS.match(value):
        raise ValueError(
            f"case status {value!r} must be 1-64 letters, digits, spaces, '.', '_' or '-'"
        )
    return value


class RecipientKind(StrEnum):
    PARTY = "party"
    OPERATOR = "operator"
    ADDRESS = "address"
    FIELD = "field"
    SENDER = "sender"  # the sender of the received email (steps on email_received)


class Recipient(BaseModel):
    """One entry of a step's to/cc/bcc: ``{party: Role}``, ``{operator: id}``, ..."""

    model_config = ConfigDict(frozen=True)

    kind: RecipientKind
    value: str

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            if len(data) != 1:
                raise ValueError(
                    "a recipient is one of {party: Role}, {operator: id}, "
                    "{address: someone@example.com} or {field: name}"
                )
            ((key, value),) = data.items()
            if key == RecipientKind.SENDER:
                if value is not True:
                    raise ValueError("the sender recipient is written {sender: true}")
                value = "true"
            return {"kind": key, "value": value}
        return data

    @model_validator(mode="after")
    def _check(self) -> Recipient:
        if self.kind is RecipientKind.ADDRESS:
            check_address(self.value, what="recipient address")
        elif not self.value.strip():
            raise ValueError(f"recipient {self.kind} must not be empty")
        return self

    @model_serializer
    def _dump(self) -> dict[str, str | bool]:
        # Written back as it is read: {sender: true}, so that a stored step loads again.
        return {str(self.kind): True if self.kind is RecipientKind.SENDER else self.value}


class Trigger(BaseModel):
    """When a step fires: on creation, when the case enters a status, on received mail,
    or when a delivery report says one of the case's emails bounced."""

    model_config = ConfigDict(frozen=True)

    event: Literal["created", "status", "email_received", "bounced"]
    status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if data in ("created", "email_received", "bounced"):
            return {"event": data}
        if isinstance(data, str):
            raise ValueError(
                f"unknown event {data[:40]!r}: a step is on created, email_received, bounced "
                "or {status: Name}"
            )
        if isinstance(data, dict) and set(data) == {"status"}:
            return {"event": "status", "status": data["status"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Trigger:
        if self.event == "status":
            if self.status is None:
                raise ValueError("a status trigger needs a status")
            check_status(self.status)
        return self

    @model_serializer
    def _dump(self) -> Any:
        return self.event if self.event != "status" else {"status": self.status}

    def fires_on(self, *, event: str, status: str | None) -> bool:
        return self.event == event and (event != "status" or self.status == status)


class DeliveryMode(StrEnum):
    QUEUED = "queued"
    IMMEDIATE = "immediate"  # try at once; on failure leave it queued for the agent


DEFAULT_ESCALATE_SECONDS = 24 * 3600


class Review(BaseModel):
    """A step's email waits for a person: ``review: {by: {party: Role} | {operator: id}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Recipient = Field(description="Who reviews: {party: Role} or {operator: id}")
    escalate_after_seconds: int = Field(
        DEFAULT_ESCALATE_SECONDS,
        ge=60,
        le=366 * 86400,
        description="A review still waiting this long notifies the reviewer's manager",
    )

    @field_validator("by")
    @classmethod
    def _reviewer(cls, v: Recipient) -> Recipient:
        if v.kind not in (RecipientKind.PARTY, RecipientKind.OPERATOR):
            raise ValueError("a reviewer is {party: Role} or {operator: id}")
        return v


class SendEmailStep(BaseModel):
    """A step of a case type: it sends an email, sets the case status, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = ""
    on: Trigger
    to: list[Recipient] = Field(default_factory=list)
    cc: list[Recipient] = Field(default_factory=list)
    bcc: list[Recipient] = Field(default_factory=list)
    correspondence: str | None = None
    subject: str | None = None
    body: str | None = None
    include_attachments: bool = False
    mode: DeliveryMode = DeliveryMode.QUEUED
    priority: Priority = Priority.NORMAL
    delay_seconds: int | None = Field(
        None, ge=1, le=366 * 86400, description="Send this long after the event, not at once"
    )
    expire_after_seconds: int | None = Field(
        None, ge=1, le=366 * 86400, description="Never send later than this after the event"
    )
    set_status: str | None = Field(None, description="Move the case to this status")
    review: Review | None = Field(None, description="A person approves the email before it is sent")

    @field_validator("set_status")
    @classmethod
    def _set_status(cls, v: str | None) -> str | None:
        return None if v is None else check_status(v)

    @property
    def sends(self) -> bool:
        """Whether the step sends an email (a step may only set the status)."""
        return bool(
            self.correspondence
            or self.subject is not None
            or self.body is not None
            or self.to
            or self.cc
            or self.bcc
        )

    @model_validator(mode="after")
    def _timing(self) -> SendEmailStep:
        delay, expiry = self.delay_seconds or 0, self.expire_after_seconds
        if expiry is not None and expiry <= delay:
            raise ValueError("expire_after_seconds must be longer than delay_seconds")
        if self.delay_seconds and self.mode is DeliveryMode.IMMEDIATE:
            raise ValueError("a delayed step cannot be sent immediately: use mode queued")
        return self

    @model_validator(mode="after")
    def _content(self) -> SendEmailStep:
        if self.set_status is not None and not self.sends:
            return self
        inline = self.subject is not None or self.body is not None
        if self.correspondence and inline:
            raise ValueError("a step names a correspondence or gives subject and body, not both")
        if not self.correspondence and (self.subject is None or self.body is None):
            raise ValueError("a step needs a correspondence, or both subject and body")
        if not (self.to or self.cc or self.bcc):
            raise ValueError("a step needs at least one recipient in to, cc or bcc")
        if self.review is not None and self.mode is DeliveryMode.IMMEDIATE:
            raise ValueError(
                "a reviewed step cannot be sent immediately: it waits for its reviewer"
            )
        return self


class CaseInbound(BaseModel):
    """How a case type takes received mail: new cases from an address, who may write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    create_case: bool = Field(False, description="New mail to `address` opens a case")
    address: str | None = Field(None, description="The address new mail is sent to")
    sender_party: str | None = Field(None, description="The work party the sender becomes")
    data: dict[str, str] = Field(
        default_factory=dict,
        description="Case data filled from the mail: {subject: field, text: field}",
    )
    accept_from_anyone: bool = Field(
        False,
        description="A subject token or plus-address from a sender who is not a party of "
        "the case still reaches it (else it goes to triage)",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if not v else check_address(v, what="inbound address")

    @field_validator("sender_party")
    @classmethod
    def _party(cls, v: str | None) -> str | None:
        return None if not v else check_record_name(v, what="inbound sender_party")

    @field_validator("data")
    @classmethod
    def _data(cls, v: dict[str, str]) -> dict[str, str]:
        for source, field in v.items():
            if source not in ("subject", "text", "from", "from_name"):
                raise ValueError(
                    f"inbound data: {source!r} is not subject, text, from or from_name"
                )
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", field):
                raise ValueError(f"inbound data: {field!r} is not a field name")
        return v

    @model_validator(mode="after")
    def _complete(self) -> CaseInbound:
        if self.create_case and not self.address:
            raise ValueError("inbound create_case needs the address new mail is sent to")
        return self


class CaseType(BaseModel):
    """A kind of case: its class, work pool, id prefix, parties and steps."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_name: str = Field(alias="class")
    class_group: str
    label: str = ""
    id_prefix: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,15}-?$")
    parties: Annotated[dict[str, str], WithJsonSchema(PARTIES_SCHEMA)] = Field(
        default_factory=dict,
        description="Work parties by role: a source (creator, creator.reports_to, "
        "operator:<id>, data.<field>), or {from: source, language: de} or "
        "{from: source, language_field: <field>} for the language of their emails",
    )
    # Read from the mapping form of ``parties`` and written back into it (see _dump_parties).
    party_languages: SkipJsonSchema[dict[str, PartyLanguage]] = Field(
        default_factory=dict, exclude=True
    )
    steps: list[SendEmailStep] = Field(default_factory=list)
    fields: list[CaseField] = Field(
        default_factory=list, description="The case data this type expects; none: any data"
    )
    subject_token: bool = Field(
        False, description="Outgoing subjects carry the case id in brackets: '... [M-12]'"
    )
    inbound: CaseInbound | None = None
    language: str | None = Field(
        None, description="The language of this type's emails when a recipient has none"
    )

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        return None if not v else check_language(v, what=None)

    @model_validator(mode="before")
    @classmethod
    def _party_forms(cls, data: Any) -> Any:
        return party_mappings(data)

    @field_serializer("parties")
    def _dump_parties(self, parties: dict[str, str]) -> dict[str, Any]:
        # A party with a language is written back as the mapping it was read from; one
        # without stays a plain source, as stored definitions have always had it.
        return {
            role: {"from": source, **self.party_languages[role].model_dump(exclude_none=True)}
            if role in self.party_languages
            else source
            for role, source in parties.items()
        }

    @field_validator("class_name", "class_group")
    @classmethod
    def _names(cls, v: str) -> str:
        return check_record_name(v, what="class name")

    @field_validator("parties")
    @classmethod
    def _parties(cls, v: dict[str, str]) -> dict[str, str]:
        for role, source in v.items():
            check_record_name(role, what="work party role")
            if not _PARTY_SOURCE.match(source):
                raise ValueError(
                    f"party {role}: source {source!r} must be creator, creator.reports_to, "
                    "operator:<id> or data.<field>"
                )
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[CaseField]) -> list[CaseField]:
        check_fields(v)
        return v

    @model_validator(mode="after")
    def _party_languages_have_parties(self) -> CaseType:
        for role in self.party_languages:
            if role not in self.parties:
                raise ValueError(f"party_languages: {role} is not one of this case type's parties")
        return self

    def field(self, name: str) -> CaseField | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def roles(self) -> list[str]:
        """The work-party roles: those of ``parties``, and the inbound sender's."""
        sender = self.inbound.sender_party if self.inbound is not None else None
        return [*self.parties, *([sender] if sender and sender not in self.parties else [])]

    @model_validator(mode="after")
    def _steps_use_known_parties(self) -> CaseType:
        roles = self.roles
        for step in self.steps:
            reviewer = (step.review.by,) if step.review is not None else ()
            for recipient in (*step.to, *step.cc, *step.bcc, *reviewer):
                if recipient.kind is RecipientKind.PARTY and recipient.value not in roles:
                    raise ValueError(
                        f"step {step.name or step.on}: party {recipient.value!r} is not one of "
                        f"this case type's parties ({', '.join(roles) or 'none'})"
                    )
                if recipient.kind is RecipientKind.SENDER and step.on.event != "email_received":
                    raise ValueError(
                        f"step {step.name or step.on}: {{sender: true}} is only for steps "
                        "on: email_received"
                    )
        return self


__all__ = [
    "DEFAULT_ESCALATE_SECONDS",
    "INITIAL_STATUS",
    "AttachmentInfo",
    "Case",
    "CaseInbound",
    "CaseType",
    "DeliveryMode",
    "HistoryEntry",
    "Party",
    "Recipient",
    "RecipientKind",
    "Review",
    "SendEmailStep",
    "Trigger",
    "check_status",
]
