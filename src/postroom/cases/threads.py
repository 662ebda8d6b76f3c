"""How a case's emails carry its id, so that the answers find their way back.

Two marks, both read again by inbound routing: a subject token (``... [M-12]``) when the
case type sets ``subject_token``, and a plus-addressed Reply-To
(``mortgages+M-12@acme.example``) when the sending account sets
``reply_to_plus_addressing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from postroom.accounts import EmailAccount
from postroom.cases.models import Case, CaseType
from postroom.validation import check_address

# What may stand between brackets in a subject and be a case id: short, no spaces.
_TOKEN = re.compile(r"\[([A-Za-z][A-Za-z0-9]{0,15}-?[0-9]{1,12})\]")
AUTO_SUBMITTED = "Auto-Submitted"
AUTO_GENERATED = "auto-generated"  # RFC 3834: sent by a step, not by a person
AUTO_REPLIED = "auto-replied"  # RFC 3834: sent by a step in answer to received mail
# Exchange's own way to ask for no out-of-office or auto-replies (bounces still come):
# kept by Graph, which sends only X- headers, where Auto-Submitted is lost.
SUPPRESS_AUTO_RESPONSES = ("X-Auto-Response-Suppress", "OOF, AutoReply")


def token(case_id: str) -> str:
    return f"[{case_id}]"


def case_subject(subject: str, case: Case, ctype: CaseType | None) -> str:
    """``subject`` ending in `` [M-12]`` when the case type asks for it and it lacks it."""
    if ctype is None or not ctype.subject_token or token(case.id) in subject:
        return subject
    return f"{subject} {token(case.id)}" if subject else token(case.id)


def plus_address(address: str, case_id: str) -> str | None:
    """``local+CASEID@domain`` of ``address``, or None when that is no valid address."""
    local, _, domain = address.rpartition("@")
    try:
        return check_address(f"{local}+{case_id}@{domain}")
    except ValueError:
        return None  # a local part too long for the id: the plain Reply-To then


def case_reply_to(account: EmailAccount, case: Case | None) -> str | None:
    """The Reply-To of ``account``'s email: plus-addressed with the case id if it says so."""
    if case is None or not account.reply_to_plus_addressing:
        return account.reply_to
    return plus_address(account.reply_to or account.address, case.id) or account.reply_to


def case_id_of(candidate: str, prefixes: Iterable[str]) -> str | None:
    """The case id ``candidate`` spells with one of ``prefixes`` (any letter case), or None.

    Ids are ``<prefix><number>`` (``-`` added unless the prefix ends in one). Mail is
    often lower-cased on the way (addresses are); the answer uses the prefix's spelling.
    """
    for prefix in prefixes:
        head = prefix if prefix.endswith("-") else f"{prefix}-"
        if len(candidate) > len(head) and candidate[: len(head)].lower() == head.lower():
            number = candidate[len(head) :]
            if number.isascii() and number.isdigit() and not number.startswith("0"):
                return f"{head}{number}"
    return None


def subject_tokens(subject: str) -> list[str]:
    """The bracketed words of a subject that could be case ids, in order."""
    return [m.group(1) for m in _TOKEN.finditer(subject)]
