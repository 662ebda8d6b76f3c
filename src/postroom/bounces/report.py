"""Reading a received delivery report: pure, and never raising.

``parse_report`` says what kind of report it is (RFC 3464 DSN, RFC 5965 ARF complaint,
a non-standard bounce read by its text, or none of these), what became of each
recipient, and what names the email it speaks of: VERP tokens in its own recipient
headers, the ENVID Postroom sent (``Original-Envelope-Id``), and the returned message's
Message-ID. Nothing here is trusted: matching decides what a report may change.
"""

from __future__ import annotations

import email.message
import email.utils
import logging

from postroom.bounces import heuristic, returned, standard
from postroom.bounces.models import BounceReport, ReportKind
from postroom.bounces.verp import token_in
from postroom.inbound.automatic import report_type
from postroom.inbound.parse_guard import read_message
from postroom.inbound.parse_text import Defects

log = logging.getLogger("postroom.bounces")

# Where the address a report was delivered to shows: the VERP address when there is one.
ENVELOPE_HEADERS = (
    "to",
    "cc",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "x-original-recipient",
    "return-path",
)
MAX_TOKENS = 20
MAX_VALUES = 20  # of each header: a report has one or two; a stranger's mail may repeat one


def parse_report(raw: bytes) -> BounceReport:
    """What the report in ``raw`` says; ``ReportKind.NONE`` when nothing reads as one."""
    try:
        return _parse(raw)
    except Exception:  # a stranger's bytes: never an error that stops the mailbox
        log.warning("a delivery report could not be read", exc_info=True)
        return BounceReport(ReportKind.NONE)


def _parse(raw: bytes) -> BounceReport:
    message = read_message(raw, Defects())
    tokens = tokens_in(message)
    headers = returned.returned_headers(message)
    message_id = returned.returned_message_id(headers)
    kind = report_type(message.get("content-type"))

    arf, is_arf = standard.read_arf(message, standard.returned_to(headers))
    if is_arf or kind == "feedback-report":
        return BounceReport(
            ReportKind.ARF, tuple(arf), message_id=message_id, tokens=tokens, soft=False
        )
    dsn, envelope_id, is_dsn = standard.read_dsn(message)
    if is_dsn:
        return BounceReport(
            ReportKind.DSN,
            tuple(dsn),
            envelope_id=envelope_id,
            message_id=message_id,
            tokens=tokens,
        )
    text = returned.text_of(message)
    message_id = message_id or returned.message_id_in_text(text)
    found, any_found = heuristic.recipients(message, text)
    if any_found:
        return BounceReport(
            ReportKind.HEURISTIC, tuple(found), message_id=message_id, tokens=tokens
        )
    status, words, soft = heuristic.nameless(text)
    return BounceReport(
        ReportKind.HEURISTIC if status is not None else ReportKind.NONE,
        message_id=message_id,
        tokens=tokens,
        status=status,
        diagnostic=words,
        soft=soft,
    )


def tokens_in(message: email.message.Message) -> tuple[str, ...]:
    """VERP tokens in the addresses the report was delivered to, in order, once each."""
    values = [
        str(v) for name in ENVELOPE_HEADERS for v in (message.get_all(name) or [])[:MAX_VALUES]
    ]
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        return ()
    found: dict[str, None] = {}
    for _, address in pairs:
        token = token_in(address)
        if token is not None and len(found) < MAX_TOKENS:
            found.setdefault(token, None)
    return tuple(found)
