"""A reviewed email's message inputs as JSON, to build it again with the reviewer's text.

Attachments and inline images are kept by digest, not by content: their bytes are in
the row's unsealed message already (a case file may be megabytes), and are taken back
from there when the message is built again at approval.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any

from postroom.cases.emails import Draft
from postroom.correspondence import Attachment, Mailbox, OutgoingEmail
from postroom.correspondence.mime import InlinePart
from postroom.errors import StateError


def draft_json(outbox_id: int, draft: Draft) -> dict[str, Any]:
    """One outbox row's draft, as the review's ``drafts`` column keeps it."""
    email = draft.email
    return {
        "outbox_id": outbox_id,
        "encrypt": draft.encrypt,
        "email": {
            "sender": _box(email.sender),
            "to": [_box(b) for b in email.to],
            "cc": [_box(b) for b in email.cc],
            "bcc": [_box(b) for b in email.bcc],
            "reply_to": email.reply_to,
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
            "message_id": email.message_id,
            "date": email.date.isoformat(),
            "headers": [list(h) for h in email.headers],
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "sha256": _digest(a)}
                for a in email.attachments
            ],
            "inline": [
                {
                    "content_id": i.content_id,
                    "filename": i.filename,
                    "content_type": i.content_type,
                    "sha256": _digest(i),
                }
                for i in email.inline
            ],
        },
    }


def draft_from_json(data: dict[str, Any], message: bytes | None) -> Draft:
    """The draft again; the binary parts' bytes come from the row's unsealed ``message``."""
    e = data["email"]
    contents = _leaf_contents(message) if (e["attachments"] or e["inline"]) else {}

    def content(item: dict[str, Any]) -> bytes:
        found = contents.get(item["sha256"])
        if found is None:
            raise StateError(
                f"the stored message no longer holds {item['filename']!r}; reject this review"
            )
        return found

    email = OutgoingEmail(
        sender=_mailbox(e["sender"]),
        to=tuple(_mailbox(b) for b in e["to"]),
        cc=tuple(_mailbox(b) for b in e["cc"]),
        bcc=tuple(_mailbox(b) for b in e["bcc"]),
        reply_to=e["reply_to"],
        subject=e["subject"],
        html=e["html"],
        text=e["text"],
        message_id=e["message_id"],
        date=datetime.fromisoformat(e["date"]),
        headers=tuple((str(n), str(v)) for n, v in e["headers"]),
        attachments=tuple(
            Attachment(a["filename"], a["content_type"], content(a)) for a in e["attachments"]
        ),
        inline=tuple(
            InlinePart(i["content_id"], i["filename"], i["content_type"], content(i))
            for i in e["inline"]
        ),
    )
    return Draft(email, encrypt=bool(data["encrypt"]))


def inline_ids(drafts: list[dict[str, Any]]) -> tuple[str, ...]:
    """The content ids of the inline images a review's email carries (every copy's)."""
    found = (i["content_id"] for d in drafts for i in d["email"]["inline"])
    return tuple(dict.fromkeys(found))


def shown_inline(parts: tuple[InlinePart, ...], html: str) -> tuple[InlinePart, ...]:
    """The images an (edited) HTML still shows: one the reviewer removed is not sent."""
    return tuple(p for p in parts if re.search(rf"cid:{re.escape(p.content_id)}\b", html))


def _box(box: Mailbox) -> list[str]:
    return [box.address, box.name]


def _mailbox(value: list[str]) -> Mailbox:
    return Mailbox(value[0], value[1])


def _digest(item: Attachment | InlinePart) -> str:
    return hashlib.sha256(item.content).hexdigest()


def _leaf_contents(message: bytes | None) -> dict[str, bytes]:
    """Every non-multipart part's decoded bytes, by their SHA-256."""
    if message is None:
        return {}
    parsed = message_from_bytes(message, policy=policy.default)
    found: dict[str, bytes] = {}
    for part in parsed.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found[hashlib.sha256(payload).hexdigest()] = payload
    return found
