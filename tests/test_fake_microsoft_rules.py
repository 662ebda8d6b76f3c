"""The Microsoft double refuses what Graph refuses and takes Graph's documented examples."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.fake_microsoft_rules import SMALL_ATTACHMENT_LIMIT, GraphRefusal, check_message


def to(address: str) -> dict[str, Any]:
    return {"emailAddress": {"address": address}}


# The examples of https://learn.microsoft.com/graph/api/user-sendmail (v1.0).
DOCUMENTED = [
    {
        "subject": "Meet for lunch?",
        "body": {"contentType": "Text", "content": "The new cafeteria is open."},
        "toRecipients": [to("frannis@contoso.com")],
        "ccRecipients": [to("danas@contoso.com")],
    },
    {
        "subject": "9/9/2018: concert",
        "body": {"contentType": "HTML", "content": "The group represents Nevada."},
        "toRecipients": [to("AlexW@contoso.com")],
        "internetMessageHeaders": [
            {"name": "x-custom-header-group-name", "value": "Nevada"},
            {"name": "x-custom-header-group-id", "value": "NV001"},
        ],
    },
    {
        "subject": "Meet for lunch?",
        "body": {"contentType": "Text", "content": "The new cafeteria is open."},
        "toRecipients": [to("meganb@contoso.com")],
        "attachments": [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "attachment.txt",
                "contentType": "text/plain",
                "contentBytes": "SGVsbG8gV29ybGQh",
            }
        ],
    },
]


@pytest.mark.parametrize("message", DOCUMENTED)
def test_documented_examples_are_taken(message: dict[str, Any]) -> None:
    check_message(message)


def attachment(content: bytes) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "a.bin",
        "contentBytes": base64.b64encode(content).decode(),
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"importanceLevel": "high"}, "RequestBodyRead"),  # not a message property
        ({"toRecipients": []}, "ErrorInvalidRecipients"),
        ({"toRecipients": [to("not an address")]}, "ErrorInvalidRecipients"),
        ({"toRecipients": [{"address": "a@b.c"}]}, "ErrorInvalidRecipients"),
        (
            {"internetMessageHeaders": [{"name": "Auto-Submitted", "value": "x"}]},
            "InvalidInternetMessageHeader",
        ),
        (
            {"internetMessageHeaders": [{"name": "X-A", "value": "a\r\nBcc: x@y.z"}]},
            "InvalidInternetMessageHeader",
        ),
        ({"body": {"contentType": "Markdown", "content": "x"}}, "RequestBodyRead"),
        (
            {"attachments": [{**attachment(b"x"), "contentBytes": "not base64!"}]},
            "ErrorInvalidBase64String",
        ),
        (
            {
                "attachments": [
                    {**attachment(b"x"), "@odata.type": "#microsoft.graph.itemAttachment"}
                ]
            },
            "RequestBodyRead",
        ),
        ({"internetMessageId": "no-angle-brackets"}, "ErrorInvalidInternetMessageId"),
    ],
)
def test_what_graph_refuses_is_refused(change: dict[str, Any], code: str) -> None:
    message = {**DOCUMENTED[0], "ccRecipients": [], **change}
    with pytest.raises(GraphRefusal) as refused:
        check_message(message)
    status, _, body = refused.value.reply
    assert status in (400, 413)
    assert code.encode() in body


def test_an_attachment_of_three_megabytes_needs_an_upload_session() -> None:
    check_message(
        {**DOCUMENTED[0], "attachments": [attachment(b"x" * (SMALL_ATTACHMENT_LIMIT - 1))]}
    )
    with pytest.raises(GraphRefusal) as refused:
        check_message({**DOCUMENTED[0], "attachments": [attachment(b"x" * SMALL_ATTACHMENT_LIMIT)]})
    assert refused.value.reply[0] == 413
