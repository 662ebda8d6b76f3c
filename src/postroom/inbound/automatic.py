"""Is a received mail automatic (an auto-reply, a list message, a report) or a bounce?

Automatic mail must never trigger steps or create cases, or two robots answer each other
for ever. The signals are RFC 3834's ``Auto-Submitted``, the de-facto ``X-Autoreply`` /
``X-Autorespond`` / ``Precedence`` headers, mailing-list headers (RFC 2369, 2919), a null
return path, and a report sender. ``X-Auto-Response-Suppress`` alone is *not* a signal:
Outlook sets it on ordinary mail people write; only with an auto-reply subject
("Automatic reply:", "Out of Office:", ...) does it mark Exchange's own answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from postroom.inbound.parse_headers import Headers
from postroom.inbound.parse_text import line

_REPORT_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered mail|returned mail|returned to sender|delivery status notification"
    r"|delivery failure|delivery has failed|failure notice|mail delivery failed"
    r"|mail delivery failure|delivery failed|could not be delivered|non.?delivery"
    r"|nicht zustellbar|unzustellbar|non remis|non distribuable|échec de la remise",
    re.IGNORECASE,
)
_BOUNCE_REPORTS = frozenset({"delivery-status", "feedback-report"})
_AUTO_SUBJECT = re.compile(
    r"^(?:automatic reply|auto(?:matic)?[- ]?response|out of (?:the )?office|autoreply"
    r"|abwesenheitsnotiz|automatische antwort|réponse automatique|absence)\b",
    re.IGNORECASE,
)
_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_PARAMETER = re.compile(r"""report-type\s*=\s*"?([A-Za-z0-9._-]+)""", re.IGNORECASE)


def report_type(content_type: object) -> str | None:
    """The ``report-type`` of a multipart/report Content-Type value, lower-cased.

    The value may come as an ``email.header.Header`` (compat32 gives one for a value
    with raw 8-bit bytes): it is read as its text.
    """
    if content_type is not None and not isinstance(content_type, str):
        content_type = str(content_type)
    if not content_type or not content_type.strip().lower().startswith("multipart/report"):
        return None
    found = _PARAMETER.search(content_type)
    return found.group(1).lower() if found else ""


def is_bounce(
    headers: Headers, *, sender: str, subject: str, content_types: Sequence[str] = ()
) -> bool:
    """True for a delivery report: RFC 3464, an ARF feedback report, or a known bounce form."""
    if report_type(headers.first("content-type")) in _BOUNCE_REPORTS:
        return True
    if _is_report_sender(sender) and _BOUNCE_SUBJECT.search(subject):
        return True
    # Non-standard bounces that still attach the machine-readable status part.
    return "message/delivery-status" in content_types and _is_report_sender(sender)


def automatic(headers: Headers, *, sender: str, subject: str, bounce: bool) -> str | None:
    """Why the mail is automatic (the header that says so), or None for a person's mail."""
    if bounce:
        return "delivery report"
    value = headers.first("auto-submitted")
    if value is not None and value.strip().lower().split(";")[0].strip() not in ("no", ""):
        return f"Auto-Submitted: {line(value, limit=80)}"
    for name, shown in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        value = headers.first(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return shown
    value = headers.first("precedence")
    if value is not None and value.strip().lower() in _PRECEDENCE:
        return f"Precedence: {value.strip().lower()}"
    for name, shown in (("list-id", "List-Id"), ("list-unsubscribe", "List-Unsubscribe")):
        if headers.first(name) is not None:
            return shown
    if headers.first("x-auto-response-suppress") is not None and _AUTO_SUBJECT.search(subject):
        return "X-Auto-Response-Suppress with an auto-reply subject"
    if report_type(headers.first("content-type")) is not None:
        return "multipart/report"
    if _is_report_sender(sender):
        return f"sent by {sender.partition('@')[0].lower()}"
    if (value := headers.first("return-path")) is not None and value.strip() == "<>":
        return "Return-Path: <> (null sender)"
    return None


def _is_report_sender(sender: str) -> bool:
    return sender.partition("@")[0].lower() in _REPORT_SENDERS
