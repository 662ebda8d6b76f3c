"""What a received message does on its case: files attached, a history line, steps.

Used by ingest (routing) and by triage (an admin's choice) alike, always in the
caller's transaction. Everything from the mail is data: names are cleaned and made
unique, header values are quoted into history lines as text, never rendered.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from postroom.cases import store as case_store
from postroom.cases.data import check_data
from postroom.cases.models import CaseType, Party
from postroom.cases.service import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENT_NAME,
    RECEIVED_EMAIL_NAME,
    SENT_EMAIL_NAME,
    CaseService,
)
from postroom.cases.steps import Answering
from postroom.correspondence import Mailbox
from postroom.db import tables
from postroom.errors import PostroomError
from postroom.inbound.parse import ParsedMail
from postroom.inbound.routing import quoted
from postroom.operators.models import Operator
from postroom.validation import check_display_name, single_line

# A name that clashes gets -2, -3 ...; past this many tries the file gets its
# message's id in the name instead.
MAX_NAME_TRIES = 100
# Case data from a mail's text: enough for any form field, well inside the data limit.
MAX_DATA_TEXT = 50_000
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def eml_name(received_id: int) -> str:
    return f"received-{received_id}.eml"


def sender_of(mail: ParsedMail) -> Mailbox | None:
    """Who wrote, as a step may answer them; None without a usable address."""
    if not mail.from_address:
        return None
    return Mailbox(mail.from_address, display_name(mail.from_name))


def display_name(name: str) -> str:
    """A sender's name fit for a header and a party: one line, bounded, or nothing."""
    try:
        return check_display_name(single_line(name))[:255]
    except ValueError:
        return ""


def who(mail: ParsedMail) -> str:
    if not mail.from_address:
        return "a sender without a valid address"
    name = display_name(mail.from_name)
    return f"{quoted(name)} <{mail.from_address}>" if name else mail.from_address


@dataclass(frozen=True, slots=True)
class Opened:
    """A case opened from mail, or why not (then ``case_id`` is None)."""

    case_id: str | None
    error: str = ""
    immediate: tuple[int, ...] = ()
    problem: Exception | None = None  # what refused the case (fields it names, say)


class CaseEffects:
    """Attaches received mail to cases, opens cases from it and fires their steps."""

    def __init__(self, cases: CaseService, *, auto_reply_limit: int) -> None:
        self._cases = cases
        self._limit = auto_reply_limit

    def answering(self, received_id: int, mail: ParsedMail) -> Answering:
        return Answering(received_id=received_id, sender=sender_of(mail), limit=self._limit)

    def on_case(
        self,
        conn: Connection,
        ctype: CaseType | None,
        case_id: str,
        *,
        received_id: int,
        mail: ParsedMail,
        raw: bytes,
        how: str,
        actor: str = case_store.SYSTEM,
        steps: bool = True,
    ) -> list[int]:
        """Attach the message to the case and fire its ``email_received`` steps.

        ``ctype`` is None when the case's type is gone: the mail is attached all the same.
        """
        attach(conn, case_id, received_id=received_id, mail=mail, raw=raw, how=how, actor=actor)
        if not steps or ctype is None:
            return []
        return self._cases.steps.fire(
            conn,
            ctype,
            case_id,
            event="email_received",
            answering=self.answering(received_id, mail),
        )

    def open_case(
        self,
        conn: Connection,
        ctype: CaseType,
        *,
        received_id: int,
        mail: ParsedMail,
        raw: bytes,
        how: str,
        actor: str = case_store.SYSTEM,
        data: dict[str, Any] | None = None,
        creator: Operator | None = None,
    ) -> Opened:
        """Open a case of ``ctype`` from the message, as its ``inbound`` section says.

        The sender becomes the ``sender_party``; ``inbound.data`` fills fields from the
        mail, and ``data`` (an admin's, in triage) goes over them. Data the case type
        refuses leaves no trace (a savepoint) and says why. The case's ``created`` steps
        fire, then its ``email_received`` steps: the mail was received onto it.
        """
        inbound = ctype.inbound
        sender = None
        if inbound is not None and inbound.sender_party and mail.from_address:
            sender = Party(
                role=inbound.sender_party,
                address=mail.from_address,
                name=display_name(mail.from_name),
            )
        values = mail_data(ctype, mail) | dict(data or {})
        try:
            with conn.begin_nested():
                case_id = self._cases.open_in(
                    conn,
                    ctype,
                    check_data(values),
                    creator=creator,
                    sender=sender,
                    how=f", from received message #{received_id}",
                )
        except (PostroomError, ValueError) as exc:
            return Opened(None, error=str(exc), problem=exc)
        attach(conn, case_id, received_id=received_id, mail=mail, raw=raw, how=how, actor=actor)
        answering = self.answering(received_id, mail)
        immediate = self._cases.steps.fire(
            conn, ctype, case_id, event="created", actor=creator, answering=answering
        )
        immediate += self._cases.steps.fire(
            conn, ctype, case_id, event="email_received", actor=creator, answering=answering
        )
        return Opened(case_id, immediate=tuple(immediate))


def mail_data(ctype: CaseType, mail: ParsedMail) -> dict[str, Any]:
    """The case data ``inbound.data`` takes from the mail (text without NUL, bounded)."""
    if ctype.inbound is None:
        return {}
    values = {
        "subject": mail.subject,
        "text": (mail.text or mail.full_text)[:MAX_DATA_TEXT],
        "from": mail.from_address or "",
        "from_name": display_name(mail.from_name),
    }
    return {
        field: values[source].replace("\x00", "").strip()
        for source, field in ctype.inbound.data.items()
        if values[source].strip()
    }


def attach(
    conn: Connection,
    case_id: str,
    *,
    received_id: int,
    mail: ParsedMail,
    raw: bytes,
    how: str,
    actor: str = case_store.SYSTEM,
) -> None:
    """Attach the raw message as ``received-<id>.eml`` and its files; add the history line."""
    a = tables.case_attachments
    taken = {str(n) for (n,) in conn.execute(select(a.c.name).where(a.c.case_id == case_id))}
    eml = eml_name(received_id)
    if eml not in taken:
        case_store.add_attachment(
            conn, case_id, name=eml, content_type="message/rfc822", content=raw
        )
        taken.add(eml)
    files: list[str] = []
    skipped: list[str] = []
    for index, item in enumerate(mail.attachments, start=1):
        if len(item.content) > MAX_ATTACHMENT_BYTES:
            skipped.append(f"{quoted(item.name)} (over {MAX_ATTACHMENT_BYTES // 2**20} MB)")
            continue
        name = unique_name(clean_name(item.name), taken, fallback=f"received-{received_id}-{index}")
        taken.add(name)
        case_store.add_attachment(
            conn,
            case_id,
            name=name,
            content_type=content_type(item.content_type, name),
            content=item.content,
        )
        files.append(name)
    subject = quoted(mail.subject) if mail.subject else "(no subject)"
    detail = f"email from {who(mail)}: '{subject}'; {how}; attached as {eml}"
    if files:
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        detail += f" with {len(files)} file{'s' if len(files) != 1 else ''}: {shown}"
    if skipped:
        detail += f"; not attached: {', '.join(skipped[:10])}"
    case_store.add_history(conn, case_id, actor=actor, action="email-received", detail=detail)


def clean_name(name: str) -> str:
    """A file name from mail made safe: one line, no path, not a name Postroom keeps."""
    clean = single_line(name.replace("\x00", "")).replace("/", "_").replace("\\", "_")
    # No format characters: a bidirectional override would show "x\u202egpj.exe" as "xexe.jpg".
    clean = "".join(c for c in clean if unicodedata.category(c) != "Cf")
    clean = clean.encode("utf-8", "replace").decode("utf-8").strip(" .")
    if not clean:
        clean = "attachment"
    if SENT_EMAIL_NAME.fullmatch(clean) or RECEIVED_EMAIL_NAME.fullmatch(clean):
        clean = f"attached-{clean}"
    return _cut(clean, MAX_ATTACHMENT_NAME)


def unique_name(name: str, taken: set[str], *, fallback: str) -> str:
    """``name``, or ``name-2``, ``name-3`` ... (before the extension) if it is taken."""
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    for number in range(2, MAX_NAME_TRIES + 2):
        candidate = _cut(stem, MAX_ATTACHMENT_NAME - len(suffix) - 6) + f"-{number}{suffix}"
        if candidate not in taken:
            return candidate
    # So many clashes: the message's id and the file's place make the name unique.
    return fallback + suffix


def content_type(declared: str, name: str) -> str:
    """The declared content type if it is one, else a guess from the name."""
    value = declared.strip().lower()
    if _CONTENT_TYPE.fullmatch(value):
        return value
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]
