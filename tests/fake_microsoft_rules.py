"""What Microsoft Graph refuses in a message: the rules the Microsoft double applies.

From https://learn.microsoft.com/graph/api/user-sendmail and the message resource:
only the documented properties, at least one and at most 500 recipients, custom
headers named x-…, file attachments in base64, attachments under 3 MB in one request.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

SMALL_ATTACHMENT_LIMIT = 3 * 1024 * 1024
REQUEST_LIMIT = 4 * 1024 * 1024
MAX_HEADERS = 5  # Graph refuses more internetMessageHeaders (and an empty list)

Reply = tuple[int, dict[str, str], bytes]

MESSAGE_KEYS = {
    "subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from",
    "sender", "attachments", "internetMessageHeaders", "internetMessageId", "importance",
    "isDeliveryReceiptRequested", "isReadReceiptRequested",
}  # fmt: skip


class GraphRefusal(Exception):
    """A request Graph would refuse: status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.reply: Reply = (
            status,
            {"Content-Type": "application/json"},
            json.dumps({"error": {"code": code, "message": message}}).encode(),
        )


def check_message(message: Any, *, attachment_limit: int = SMALL_ATTACHMENT_LIMIT) -> None:
    """Raise :class:`GraphRefusal` for a message Graph's sendMail would refuse."""
    if not isinstance(message, dict):
        raise GraphRefusal(400, "RequestBodyRead", "message must be an object")
    for key in message:
        if key not in MESSAGE_KEYS:
            raise GraphRefusal(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.message'.",
            )
    body = message.get("body", {"contentType": "Text", "content": ""})
    if (
        not isinstance(body, dict)
        or str(body.get("contentType", "")).lower() not in ("text", "html")
        or not isinstance(body.get("content", ""), str)
    ):
        raise GraphRefusal(400, "RequestBodyRead", "body needs contentType Text or HTML")
    total = 0
    for key in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
        for r in message.get(key, []):
            _check_box(r)
        if key != "replyTo":
            total += len(message.get(key, []))
    for key in ("from", "sender"):
        if key in message:
            _check_box(message[key])
    if total == 0:
        raise GraphRefusal(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid., A message can't be sent because it "
            "contains no recipients.",
        )
    if total > 500:
        raise GraphRefusal(400, "ErrorTooManyRecipients", "more than 500 recipients")
    headers = message.get("internetMessageHeaders")
    if headers is not None and not 0 < len(headers) <= MAX_HEADERS:
        raise GraphRefusal(
            400,
            "InvalidInternetMessageHeaderCollection",
            f"Maximum number of headers in one message should be less than or equal to "
            f"{MAX_HEADERS}.",
        )
    for header in headers or []:
        name = header.get("name", "") if isinstance(header, dict) else ""
        if not isinstance(header, dict) or set(header) != {"name", "value"}:
            raise GraphRefusal(400, "RequestBodyRead", "a header needs name and value")
        if not name.lower().startswith("x-"):
            raise GraphRefusal(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )
        if any(c in name + str(header["value"]) for c in "\r\n"):
            raise GraphRefusal(400, "InvalidInternetMessageHeader", "a header spans lines")
    message_id = message.get("internetMessageId")
    if message_id is not None and not (
        isinstance(message_id, str) and message_id.startswith("<") and "@" in message_id
    ):
        raise GraphRefusal(400, "ErrorInvalidInternetMessageId", "bad internetMessageId")
    for attachment in message.get("attachments", []):
        decode_attachment(attachment, limit=attachment_limit)


def _check_box(value: Any) -> None:
    box = value.get("emailAddress") if isinstance(value, dict) else None
    address = box.get("address") if isinstance(box, dict) else None
    if (
        not isinstance(address, str)
        or address.count("@") != 1
        or any(c.isspace() for c in address)
        or set(box or ()) - {"address", "name"}
    ):
        raise GraphRefusal(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")


def decode_attachment(attachment: Any, *, limit: int) -> tuple[str, bytes]:
    """The name and bytes of a fileAttachment, as Graph checks them."""
    allowed = {"@odata.type", "name", "contentType", "contentBytes", "isInline", "contentId"}
    if (
        not isinstance(attachment, dict)
        or attachment.get("@odata.type") != "#microsoft.graph.fileAttachment"
        or set(attachment) - allowed
        or not isinstance(attachment.get("name"), str)
    ):
        raise GraphRefusal(400, "RequestBodyRead", "not a #microsoft.graph.fileAttachment")
    check_inline_fields(attachment)
    if not isinstance(attachment.get("contentType", ""), str):
        raise GraphRefusal(400, "RequestBodyRead", "contentType must be a string")
    if not isinstance(attachment.get("contentBytes", ""), str):
        raise GraphRefusal(400, "RequestBodyRead", "contentBytes must be a base64 string")
    try:
        content = base64.b64decode(attachment.get("contentBytes", ""), validate=True)
    except (binascii.Error, ValueError):
        raise GraphRefusal(400, "ErrorInvalidBase64String", "contentBytes is not base64") from None
    if len(content) >= limit:
        raise GraphRefusal(413, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "too big")
    return attachment["name"], content


def check_inline_fields(item: dict[str, Any]) -> None:
    """``isInline`` is an Edm.Boolean and ``contentId`` an Edm.String, as Graph reads them
    (``"true"`` or a number is refused); an inline image must say which cid: it is."""
    inline = item.get("isInline", False)
    if not isinstance(inline, bool):
        raise GraphRefusal(
            400,
            "RequestBodyRead",
            "Cannot convert a primitive value to the expected type 'Edm.Boolean'.",
        )
    content_id = item.get("contentId")
    if content_id is not None and not isinstance(content_id, str):
        raise GraphRefusal(
            400, "RequestBodyRead", "Cannot convert the value to the expected type 'Edm.String'."
        )
    if inline and content_id is not None and not content_id.strip():
        raise GraphRefusal(400, "ErrorInvalidProperty", "contentId must not be empty.")


def inline_ids(attachments: Any) -> dict[str, str]:
    """The name and contentId of each inline attachment (checked by :func:`decode_attachment`)."""
    if not isinstance(attachments, list):
        return {}
    return {
        str(a["name"]): str(a.get("contentId", ""))
        for a in attachments
        if isinstance(a, dict) and a.get("isInline") is True
    }
