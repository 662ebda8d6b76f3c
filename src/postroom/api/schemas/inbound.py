"""Received mail and a case's conversation as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from postroom.inbound.conversation import ConversationItem
from postroom.inbound.models import ReceivedMessage

_RECEIVED_EXAMPLE: dict[str, Any] = {
    "id": 17,
    "account": "MyOrg-Mortgage-Work",
    "folder": "INBOX",
    "message_id": "CAF9x2=reply@mail.example.net",
    "in_reply_to": "20260105.a1b2c3@postroom.example.com",
    "subject": "Re: Your mortgage request [M-12]",
    "from_address": "jane@example.net",
    "from_name": "Jane Doe",
    "to": ["mortgages@example.com"],
    "sent_at": "2026-01-05T10:14:00Z",
    "received_at": "2026-01-05T10:14:03Z",
    "size": 4213,
    "status": "matched",
    "reason": "In-Reply-To names outbox email #41 of case M-12",
    "case_id": "M-12",
    "text": "Thank you, the documents are attached.",
    "defects": [],
    "server_state": "done",
    "attachments": 1,
}


class ReceivedView(ReceivedMessage):
    """A received message: its headers, how it was routed and what became of it.

    Header values are the sender's words: data to show escaped, never markup.
    """

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [_RECEIVED_EXAMPLE]})

    @classmethod
    def of(cls, message: ReceivedMessage) -> ReceivedView:
        return cls.model_validate(message.model_dump())


class ReceivedPage(BaseModel):
    """One page of received messages, newest first; ``next`` is the following page's URL."""

    items: list[ReceivedView]
    next: str | None = Field(None, description="URL of the next page; null on the last")


class AttachToCase(BaseModel):
    """The case a received message is to be threaded onto."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"case_id": "M-12"}]})

    case_id: str = Field(min_length=1, max_length=64, examples=["M-12"])


class CaseFromMessage(BaseModel):
    """The case to open from a received message: its type, data and creator."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "class_name": "MyOrg-Mortgage-Work-MortgageRequest",
                    "data": {"applicant": "Jane Customer", "amount": 250000},
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
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="Case data, over what the case type's inbound.data takes from the mail",
    )
    operator: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Operator id of the creator (for parties such as creator.reports_to)",
    )


class ConversationEntry(BaseModel):
    """One email of a case's conversation: sent from the outbox, or received."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "sent",
                    "at": "2026-01-05T09:00:02Z",
                    "id": 41,
                    "subject": "Your mortgage request [M-12]",
                    "from_address": "mortgages@example.com",
                    "to": ["jane@example.net"],
                    "status": "sent",
                    "text": "Dear Jane, we received your request.",
                    "html": "<p>Dear Jane, we received your request.</p>",
                },
                {
                    "kind": "received",
                    "at": "2026-01-05T10:14:03Z",
                    "id": 17,
                    "subject": "Re: Your mortgage request [M-12]",
                    "from_address": "jane@example.net",
                    "to": ["mortgages@example.com"],
                    "status": "matched",
                    "text": "Thank you, the documents are attached.",
                    "html": None,
                },
            ]
        }
    )

    kind: Literal["sent", "received"] = Field(
        description="sent: an outbox email (id is its outbox id); received: a received "
        "message (id for /inbound/{id})"
    )
    at: datetime = Field(description="When it was sent (or queued), or received")
    id: int
    subject: str
    from_address: str | None
    to: list[str]
    status: str = Field(description="The outbox status, or the received message's status")
    text: str = Field(description="The text; for received mail the reply's own text")
    html: str | None = Field(
        None,
        description="The HTML part; for received mail sanitised (an allow-list of tags, "
        "attributes and styles: no scripts, event handlers, javascript: links, forms or "
        "remote images)",
    )

    full_text: str = Field(
        "", description="The whole text; for received mail with its quoted history"
    )

    @classmethod
    def of(cls, item: ConversationItem) -> ConversationEntry:
        return cls.model_validate(item.model_dump())
