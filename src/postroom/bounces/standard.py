"""The standard reports: RFC 3464 delivery status and RFC 5965 feedback (ARF).

Both are ``multipart/report``: a part for people, a machine-readable part of header-like
fields, and the returned message (or its headers). Only the machine-readable part is
read here; the returned message is :mod:`postroom.bounces.returned`'s.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import itertools
import re
from collections.abc import Iterator

from postroom.bounces.models import RecipientReport, ReportOutcome
from postroom.bounces.severity import is_soft, one_line, parse_diagnostic, status_of

MAX_RECIPIENTS = 500  # per report; a report naming more is read up to here
MAX_PARTS = 1_000  # parts of a report looked at
MAX_BLOCKS = MAX_RECIPIENTS * 2  # field blocks read from one part
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_XTEXT = re.compile(r"\+([0-9A-F]{2})")


def walked(message: email.message.Message) -> Iterator[email.message.Message]:
    """The message's parts in order, the first :data:`MAX_PARTS` (a real report has a
    handful; a stranger's mail may have tens of thousands)."""
    return itertools.islice(message.walk(), MAX_PARTS)


def parts_of(message: email.message.Message, content_type: str) -> Iterator[email.message.Message]:
    """Every part of ``content_type`` among the message's first parts, in order."""
    for part in walked(message):
        if part.get_content_type() == content_type:
            yield part


def blocks(part: email.message.Message) -> list[email.message.Message]:
    """The field blocks of a ``message/delivery-status`` or ``message/feedback-report`` part.

    The standard parser splits delivery-status into blocks itself; a part sent with a
    transfer encoding, or of a type it does not split, arrives as text and is split here.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        found = [p for p in payload if isinstance(p, email.message.Message)]
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        if encoding in ("base64", "quoted-printable"):
            # The parser split the still-encoded text as if it were fields: undo both.
            return _split(_decode("\n\n".join(_source(p) for p in found), encoding))
        if len(found) == 1 and not found[0].keys():
            text = found[0].get_payload()
            return _split(text) if isinstance(text, str) else []
        return found
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return _split(text)


def _source(block: email.message.Message) -> str:
    """A block as the parser read it: its fields, then what it took for a body."""
    fields = "".join(f"{name}: {value}\n" for name, value in block.raw_items())
    body = block.get_payload()
    return fields + (body if isinstance(body, str) else "")


def _decode(text: str, encoding: str) -> str:
    """``text`` with its transfer encoding undone, read as UTF-8."""
    carrier = email.message.Message()
    carrier["Content-Transfer-Encoding"] = encoding
    carrier.set_payload(text)
    raw = carrier.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""


def _split(text: str) -> list[email.message.Message]:
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip(), maxsplit=MAX_BLOCKS)[:MAX_BLOCKS]
    # A run of blank lines leaves the next chunk starting with one: not a field block.
    return [parser.parsestr(chunk.strip() + "\n") for chunk in chunks if chunk.strip()]


def field(block: email.message.Message, name: str) -> str | None:
    """One field's value on one line, or None when absent or empty."""
    value = block.get(name)
    if value is None:
        return None
    text = one_line(str(value), limit=2000)
    return text or None


def addresses(value: str | None) -> list[str]:
    """``rfc822; a@b`` (or ``utf-8; ...``, or a bare address) → the address, and its
    xtext-decoded form when it differs (a report that echoes ORCPT as written)."""
    if not value:
        return []
    kind, semicolon, rest = value.partition(";")
    address = rest if semicolon else kind
    if semicolon and kind.strip().lower() == "utf-8":
        address = _UTF8_ESCAPE.sub(lambda m: _char(m.group(1)), address)
    address = address.strip().strip("<>").strip()
    if "@" not in address or any(c.isspace() for c in address):
        return []
    found = [address]
    decoded = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), address)
    if decoded != address and "@" in decoded:
        found.append(decoded)
    return found


def _char(code: str) -> str:
    try:
        return chr(int(code, 16))
    except (ValueError, OverflowError):
        return "\ufffd"


def read_dsn(
    message: email.message.Message,
) -> tuple[list[RecipientReport], str | None, bool]:
    """The per-recipient outcomes, the Original-Envelope-Id, and whether there was a
    delivery-status part at all."""
    reports: list[RecipientReport] = []
    envelope_id: str | None = None
    seen = False
    for part in parts_of(message, "message/delivery-status"):
        seen = True
        for block in blocks(part):
            envelope_id = envelope_id or field(block, "original-envelope-id")
            report = _recipient(block)
            if report is not None:
                reports.append(report)
            if len(reports) >= MAX_RECIPIENTS:
                return reports, envelope_id, seen
    return reports, envelope_id, seen


def _recipient(block: email.message.Message) -> RecipientReport | None:
    named = addresses(field(block, "original-recipient"))
    named += [a for a in addresses(field(block, "final-recipient")) if a not in named]
    if not named:
        return None
    action = (field(block, "action") or "").lower()
    if action.startswith("delayed"):
        outcome = ReportOutcome.DELAYED
    elif action.startswith(("fail", "error")):  # "error": opensmtpd's own word
        outcome = ReportOutcome.BOUNCED
    else:
        return None  # delivered, relayed, expanded: nothing went wrong
    code, diag_status, text = parse_diagnostic(field(block, "diagnostic-code") or "")
    status = status_of(field(block, "status")) or diag_status
    remote = field(block, "remote-mta")
    if remote is not None:
        # "dns; mx.example.org. (192.0.2.1, the server for ...)": the host is enough.
        words = (remote.partition(";")[2] or remote).split()
        remote = words[0].rstrip(".")[:255] if words else None
    if not text:
        text = f"{'delivery delayed' if outcome is ReportOutcome.DELAYED else 'delivery failed'}"
        text += f" ({status})" if status else ""
    return RecipientReport(
        addresses=tuple(named),
        outcome=outcome,
        status=status,
        diagnostic=text,
        remote_mta=remote or None,
        soft=outcome is ReportOutcome.DELAYED or is_soft(code=code, status=status, permanent=True),
        code=code,
    )


def read_arf(
    message: email.message.Message, returned_to: list[str]
) -> tuple[list[RecipientReport], bool]:
    """The complained recipients of a feedback report (Original-Rcpt-To, else the
    returned message's To), and whether there was a feedback-report part."""
    for part in parts_of(message, "message/feedback-report"):
        fields = blocks(part)
        if not fields:
            return [], True
        first = fields[0]
        named: list[str] = []
        for raw in (first.get_all("original-rcpt-to") or [])[:MAX_RECIPIENTS]:
            named += [a for a in addresses(one_line(str(raw))) if a not in named]
        if not named:
            named = list(dict.fromkeys(returned_to))
        words = [
            f"{label}: {said}"
            for label, name in (("Feedback-Type", "feedback-type"), ("User-Agent", "user-agent"))
            if (said := field(first, name))
        ]
        diagnostic = one_line("; ".join(words)) or "reported as spam"
        reports = [
            RecipientReport(addresses=(a,), outcome=ReportOutcome.COMPLAINED, diagnostic=diagnostic)
            for a in named[:MAX_RECIPIENTS]
        ]
        return reports, True
    return [], False


def returned_to(headers: email.message.Message | None) -> list[str]:
    """The To addresses of a returned message's headers."""
    if headers is None:
        return []
    values = [str(v) for v in headers.get_all("to") or []]
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        return []
    return [a.strip() for _, a in pairs if "@" in a]
