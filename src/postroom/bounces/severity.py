"""Status codes in reports, and whether a bounce is soft: through the outbox's table.

A report's ``Status`` (RFC 3463) and its diagnostic's SMTP code are read as the agent
reads a refusal (``outbox.classify``), so that a full mailbox (5.2.2) is soft in a
report as it is transient at the SMTP dialogue.
"""

from __future__ import annotations

import re

from postroom.outbox.classify import EXCEPTIONS, Verdict, classify_reply

MAX_DIAGNOSTIC = 500
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_LEADING_CODE = re.compile(r"^\s*([245]\d\d)(?:[ -]|$)")
# An SMTP code (with its status) anywhere in a text: "550 5.1.1", "550-5.1.1", "421".
_TEXT_CODE = re.compile(r"(?<![\d.])([45]\d\d)[ -]+(?:#?([45]\.\d{1,3}\.\d{1,3})(?![\d.]))?")
# Multi-line replies repeat their code on each line: "550-5.1.1 " inside the text.
_CONTINUATION = re.compile(r"\s[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s)?")


def status_of(value: str | None) -> str | None:
    """The RFC 3463 status in ``value`` ("5.1.1 (bad mailbox)" → "5.1.1"), or None."""
    if not value:
        return None
    found = _STATUS.search(value)
    return ".".join(found.groups()) if found else None


def one_line(value: str, limit: int = MAX_DIAGNOSTIC) -> str:
    """``value`` on one line, runs of space folded, bounded."""
    text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_diagnostic(value: str) -> tuple[int | None, str | None, str]:
    """A ``Diagnostic-Code`` value → (SMTP code, RFC 3463 status, text on one line).

    ``smtp; 550-5.1.1 The email account ... 550-5.1.1 double-checking ...`` gives
    (550, "5.1.1", "550 5.1.1 The email account ... double-checking ...").
    """
    _, semicolon, rest = value.partition(";")
    text = one_line(rest if semicolon else value, limit=MAX_DIAGNOSTIC * 4)
    found = _LEADING_CODE.match(text)
    code = int(found.group(1)) if found else None
    if code is not None:
        head = text[:3]
        body = _CONTINUATION.sub(" ", text[3:].lstrip(" -"))
        text = f"{head} {body}"
    return code, status_of(text[:40]), one_line(text)


def text_code(text: str) -> tuple[int | None, str | None]:
    """The first SMTP code and status a free text holds (a non-standard report's)."""
    code_match = _TEXT_CODE.search(text)
    code = int(code_match.group(1)) if code_match else None
    status = code_match.group(2) if code_match and code_match.group(2) else status_of(text)
    return code, status


def is_soft(*, code: int | None, status: str | None, permanent: bool) -> bool:
    """Whether a bounce may pass: by the classification table when a code or status is
    known, else soft unless the report (or the detector) says the failure is permanent."""
    if code is None and status is None:
        return not permanent
    if code is None:
        assert status is not None
        # Only the status: an exception of the table for it decides, else its class.
        listed = [v for (_, enhanced), v in EXCEPTIONS.items() if enhanced == status]
        if listed:
            return listed[0] is not Verdict.PERMANENT
        code = 550 if status.startswith("5") else 450
    return classify_reply(code, status).verdict is not Verdict.PERMANENT
