"""Microsoft Graph error responses to Postroom's errors: pure and table-driven.

Graph answers ``{"error": {"code": "...", "message": "..."}}``; the code, not the
HTTP status alone, says what an administrator has to do.
"""

from __future__ import annotations

import json
from typing import Any

from postroom.errors import (
    CredentialsRejectedError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

EXPLANATIONS: dict[str, str] = {
    "ErrorInvalidUser": "the mailbox does not exist in this tenant: check user_principal_name",
    "MailboxNotEnabledForRESTAPI": "the mailbox is inactive, soft-deleted or on-premises: "
    "Graph sends only from a licensed Exchange Online mailbox",
    "ErrorAccessDenied": "the application may not send as this mailbox: grant it the Mail.Send "
    "application permission with admin consent (and check application access policies)",
    "ErrorSendAsDenied": "the mailbox may not send as the From address: use the mailbox's own "
    "address or grant Send As",
    "ErrorInvalidRecipients": "a recipient address is not valid",
    "ErrorMessageSizeExceeded": "the message is larger than the mailbox accepts",
    "RequestEntityTooLarge": "the request is larger than Graph accepts",
    "ErrorQuotaExceeded": "the mailbox is over its storage quota; trying again later",
    "ErrorMailboxStoreUnavailable": "the mailbox is temporarily unavailable; trying again later",
    "ErrorServerBusy": "the mailbox server is busy; trying again later",
    "InvalidAuthenticationToken": "Graph refused the access token: check that the profile's "
    "scope is https://graph.microsoft.com/.default",
    "RequestBodyRead": "Graph could not read the request",
    "InvalidInternetMessageHeader": "a custom header is not accepted by Graph (names must "
    "start with X-)",
    "InvalidInternetMessageHeaderCollection": "Graph takes at most five X- headers",
}

# A message too large for one request goes through a draft, which needs more than Mail.Send.
DRAFT_STAGES = frozenset({"messages", "attachments", "createUploadSession", "DELETE"})
DRAFT_ACCESS = (
    "the application may not write this mailbox's drafts: messages with an attachment of "
    "3 MB or more, or over 4 MB, need the Mail.ReadWrite application permission (with admin "
    "consent) besides Mail.Send"
)

# Codes about the sending mailbox or the application, not about one message: the agent
# stops sending this batch through the account at the first one.
ACCOUNT_CODES = frozenset(
    {"ErrorAccessDenied", "ErrorSendAsDenied", "ErrorInvalidUser", "MailboxNotEnabledForRESTAPI"}
)
ACCOUNT_STAGE = "mailbox"

# Codes that pass with time, whatever the HTTP status says.
TRANSIENT_CODES = frozenset(
    {"ErrorQuotaExceeded", "ErrorMailboxStoreUnavailable", "ErrorServerBusy", "ErrorTimeoutExpired"}
)
TRANSIENT_STATUSES = frozenset({408, 409, 423, 429, 500, 502, 503, 504})


def error_body(content: bytes) -> tuple[str, str]:
    """The Graph error code and message of a response body ('' when there are none)."""
    try:
        data: Any = json.loads(content)
    except ValueError:
        return "", content[:200].decode("utf-8", "replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")


def graph_error(status: int, content: bytes, *, stage: str) -> DeliveryError:
    """The error for a Graph response that is not a success."""
    code, message = error_body(content)
    explanation = EXPLANATIONS.get(code, "")
    if code == "ErrorAccessDenied" and stage in DRAFT_STAGES:
        explanation = DRAFT_ACCESS
    text = f"Graph answered {status}" + (f" {code}" if code else "")
    if message:
        text += f": {message}"
    if explanation:
        text += f" ({explanation})"
    if status == 401:
        return CredentialsRejectedError(text, code=status, stage=stage)
    if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return TransientDeliveryError(text, code=status, stage=stage)
    if code in ACCOUNT_CODES:
        stage = ACCOUNT_STAGE
    return PermanentDeliveryError(text, code=status, stage=stage)
