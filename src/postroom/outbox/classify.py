"""Delivery classification: SMTP replies to verdicts, pure and table-driven.

RFC 5321 §4.2.1: 2yz completes, 4yz is a transient failure, 5yz a permanent one.
Some providers use 5yz where the condition passes (Exchange's 554 5.2.0 for a
mailbox over its sending quota); the exceptions table says so explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Classification:
    """What a reply means for the message, and words a user can act on."""

    verdict: Verdict
    explanation: str = ""


# (code, enhanced status) -> verdict that overrides the class of the code.
EXCEPTIONS: dict[tuple[int, str], Verdict] = {
    (554, "5.2.0"): Verdict.TRANSIENT,  # Exchange STOREDRV: quota or submission hiccup
    (552, "5.2.2"): Verdict.TRANSIENT,  # mailbox full: clears when the owner deletes mail
    (550, "5.4.300"): Verdict.TRANSIENT,  # Exchange: message expired in its own queue
    (452, "4.5.3"): Verdict.TRANSIENT,  # too many recipients: send the rest later
}

EXPLANATIONS: dict[tuple[int | None, str], str] = {
    (535, "5.7.139"): "SMTP AUTH is disabled for this Microsoft 365 tenant or mailbox: "
    "enable Authenticated SMTP for the mailbox, or send through Microsoft Graph",
    (535, "5.7.3"): "the server rejected the user ID and password: check both "
    "(an app password is needed when multi-factor authentication is on)",
    (535, "5.7.8"): "the server rejected the user ID and password: check both "
    "(an app password is needed when multi-factor authentication is on)",
    (530, "5.7.0"): "the server requires STARTTLS before this command: set security to starttls",
    (530, "5.7.57"): "the server requires authentication: set the account's user ID and password",
    (550, "5.7.60"): "the mailbox may not send as this From address (SendAs denied): "
    "use the mailbox's own address or grant Send As",
    (554, "5.2.0"): "Exchange could not submit the message (often the sending quota); "
    "it will be tried again later",
    (550, "5.1.1"): "the recipient's mailbox does not exist",
    (550, "5.1.10"): "the recipient's address is not known to the receiving tenant",
    (554, "5.7.1"): "the server refused to relay or its policy rejected the message",
    (550, "5.7.1"): "the server refused to relay or its policy rejected the message",
    (421, "4.7.0"): "the server is limiting connections or messages; trying again later",
    (552, "5.3.4"): "the message is larger than the server accepts",
    (552, "5.2.2"): "the recipient's mailbox is full; trying again later",
}

_BY_CODE: dict[int, str] = {
    421: "the server is closing the connection (busy or shutting down)",
    450: "the mailbox is temporarily unavailable",
    451: "the server had a local error; trying again later",
    452: "the server is short of storage or limits recipients; trying again later",
    454: "TLS or authentication is temporarily unavailable on the server",
    530: "the server requires authentication or STARTTLS first",
    534: "the server requires a stronger authentication mechanism",
    535: "the server rejected the credentials",
    550: "the mailbox is unavailable or the message was refused",
    551: "the recipient is not local to the server",
    552: "the message exceeds a storage limit",
    553: "the mailbox name is not allowed",
    554: "the transaction failed",
}


def classify_reply(code: int, enhanced: str | None = None) -> Classification:
    """Classify one SMTP reply (``code`` and optional RFC 3463 enhanced status)."""
    key = (code, enhanced or "")
    explanation = EXPLANATIONS.get(key) or _BY_CODE.get(code, "")
    if key in EXCEPTIONS:
        return Classification(EXCEPTIONS[key], explanation)
    if 200 <= code < 400:
        return Classification(Verdict.SENT, explanation)
    if 400 <= code < 500:
        return Classification(Verdict.TRANSIENT, explanation)
    return Classification(Verdict.PERMANENT, explanation)


def split_enhanced(message: str) -> tuple[str | None, str]:
    """Split ``'5.7.139 Authentication unsuccessful'`` into the code and the text."""
    head, _, rest = message.strip().partition(" ")
    parts = head.split(".")
    if len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts[1:]):
        return head, rest.strip()
    return None, message.strip()
