"""The mail-reading half of the Microsoft Graph double: folders, delta query, $value, settle.

Follows https://learn.microsoft.com/graph/api/message-delta and the delta query overview:
a first round returns every message in the folder in pages (``Prefer:
odata.maxpagesize``) linked by ``@odata.nextLink`` and ends with ``@odata.deltaLink``;
a delta link returns what changed since (new, updated, ``@removed``), or only new
messages when the first request asked ``changeType=created``. Links carry opaque
state tokens; an expired one answers 410 ``syncStateNotFound``. Moving a message gives
it a new id, as Exchange does.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from tests.fake_microsoft_rules import GraphRefusal, Reply

WELL_KNOWN = {
    "inbox": "Inbox",
    "archive": "Archive",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
    "sentitems": "Sent Items",
}
SELECTABLE = {"id", "internetMessageId", "isRead", "receivedDateTime", "subject", "from"}
DEFAULT_PAGE = 10
READ_ROLES = {"Mail.Read", "Mail.ReadWrite"}
DELTA_ROLES = READ_ROLES | {"Mail.ReadBasic.All"}
WRITE_ROLES = {"Mail.ReadWrite"}


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None = None


@dataclass
class StoredMessage:
    id: str
    folder: str
    raw: bytes
    is_read: bool
    received: str
    internet_message_id: str
    added: int  # change number at which it entered its folder
    updated: int


@dataclass
class SyncState:
    """One delta round in progress (skip token) or done (delta token)."""

    folder: str
    created_only: bool
    select: list[str]
    since: int  # change number the round reports from (0: everything in the folder)
    mark: int = 0  # change number when the round's changes were taken: the next round's since
    pending: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = DEFAULT_PAGE


@dataclass
class Mailbox:
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    removed: list[tuple[int, str, str]] = field(default_factory=list)  # change, id, folder


class MailStore:
    """Mailboxes of folders of raw MIME messages, read the way Graph's delta query reads."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.mailboxes: dict[str, Mailbox] = {}
        self.states: dict[str, SyncState] = {}
        self.changes = itertools.count(1)
        self.downloads: list[str] = []  # message ids whose $value was read
        self.settled: list[tuple[str, str]] = []  # (action, message id)

    # --- set-up from tests --------------------------------------------------------------

    def box(self, mailbox: str) -> Mailbox:
        box = self.mailboxes.get(mailbox.lower())
        if box is None:
            box = self.mailboxes[mailbox.lower()] = Mailbox()
            for key, name in WELL_KNOWN.items():
                box.folders[key] = Folder("AAMkF" + secrets.token_hex(6), name)
        return box

    def add_folder(self, mailbox: str, name: str, *, parent: str | None = None) -> str:
        with self.lock:
            box = self.box(mailbox)
            folder = Folder("AAMkF" + secrets.token_hex(6), name, parent)
            box.folders[folder.id] = folder
            return folder.id

    def deliver(
        self, mailbox: str, raw: bytes, *, folder: str = "inbox", is_read: bool = False
    ) -> str:
        """Put a message into a folder (well-known name or id); its new id."""
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        with self.lock:
            box = self.box(mailbox)
            change = next(self.changes)
            message = StoredMessage(
                id="AAMkM" + secrets.token_hex(8),
                folder=self.folder(box, folder).id,
                raw=raw,
                is_read=is_read,
                received=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                internet_message_id=str(parsed.get("Message-ID", "")).strip(),
                added=change,
                updated=change,
            )
            box.messages[message.id] = message
            return message.id

    def in_folder(self, mailbox: str, folder: str = "inbox") -> list[StoredMessage]:
        with self.lock:
            box = self.box(mailbox)
            target = self.folder(box, folder).id
            return [m for m in box.messages.values() if m.folder == target]

    def expire_sync_states(self) -> None:
        """Forget every skip and delta token: the next use of a link answers 410."""
        with self.lock:
            self.states.clear()

    # --- Graph requests -----------------------------------------------------------------

    def folder(self, box: Mailbox, key: str) -> Folder:
        found = box.folders.get(key) or box.folders.get(key.lower())
        if found is None:
            found = next((f for f in box.folders.values() if f.id == key), None)
        if found is None:
            raise GraphRefusal(404, "ErrorItemNotFound", "The specified object was not found.")
        return found

    def handle(
        self, method: str, mailbox: str, rest: list[str], query: str, headers: Any, body: bytes,
        roles: list[str], base: str,
    ) -> Reply | None:  # fmt: skip
        """Answer a mail-reading request under /users/{mailbox}, or None when it is not one."""
        reading = rest[:1] == ["mailFolders"] or (
            rest[:1] == ["messages"] and len(rest) >= 2 and method in ("GET", "PATCH", "DELETE")
        )
        moving = method == "POST" and len(rest) == 3 and rest[0] == "messages" and rest[2] == "move"
        if not (reading or moving):
            return None
        granted = set(roles)
        delta = rest[-2:] == ["messages", "delta"]
        needed = DELTA_ROLES if delta else READ_ROLES if method == "GET" else WRITE_ROLES
        if not granted & needed:
            raise GraphRefusal(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            raise GraphRefusal(400, "RequestBodyRead", "the body is not JSON") from None
        with self.lock:
            box = self.box(mailbox)
            if method == "GET" and rest == ["mailFolders"]:
                return self.list_folders(box, None, query)
            if method == "GET" and len(rest) == 3 and rest[2] == "childFolders":
                return self.list_folders(box, self.folder(box, rest[1]).id, query)
            if method == "GET" and len(rest) == 2 and rest[0] == "mailFolders":
                return _json(200, self.folder_json(box, self.folder(box, rest[1])))
            if method == "GET" and delta and len(rest) == 4:
                return self.delta(box, mailbox, rest[1], query, headers, base)
            if rest[0] == "messages":
                return self.message_call(method, box, rest[1], rest[2:], data)
        raise GraphRefusal(404, "ResourceNotFound", "Resource not found for the segment.")

    def folder_json(self, box: Mailbox, folder: Folder) -> dict[str, Any]:
        inside = [m for m in box.messages.values() if m.folder == folder.id]
        return {
            "id": folder.id,
            "displayName": folder.name,
            "parentFolderId": folder.parent,
            "totalItemCount": len(inside),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
        }

    def list_folders(self, box: Mailbox, parent: str | None, query: str) -> Reply:
        params = parse_qs(query)
        wanted = None
        for text in params.get("$filter", []):
            prefix = "displayName eq '"
            if not (text.startswith(prefix) and text.endswith("'")):
                raise GraphRefusal(400, "ErrorInvalidUrlQueryFilter", "unsupported $filter")
            wanted = text[len(prefix) : -1].replace("''", "'")
        found = [
            self.folder_json(box, f)
            for f in box.folders.values()
            if f.parent == parent and (wanted is None or f.name == wanted)
        ]
        return _json(200, {"value": found})

    def delta(
        self, box: Mailbox, mailbox: str, folder_key: str, query: str, headers: Any, base: str
    ) -> Reply:
        params = {k: v[0] for k, v in parse_qs(query).items()}
        size = _page_size(headers)
        token = params.get("$skiptoken") or params.get("$deltatoken")
        if token is not None:
            state = self.states.get(token)
            if state is None:
                raise GraphRefusal(
                    410, "syncStateNotFound", "The sync state generation is not found."
                )
            state = replace(state)  # a link may be followed again: it gives the same page
            if "$deltatoken" in params:
                # A delta link starts a new round from where the last one ended.
                state = SyncState(state.folder, state.created_only, state.select, state.mark)
                self.start(box, state)
        else:
            select = params.get("$select", "").split(",") if params.get("$select") else []
            if set(select) - SELECTABLE:
                raise GraphRefusal(400, "RequestBroker--ParseUri", "a $select property is unknown")
            change_type = params.get("changeType")
            if change_type not in (None, "created"):
                raise GraphRefusal(400, "ErrorInvalidParameter", "changeType is not supported")
            folder = self.folder(box, folder_key)
            state = SyncState(folder.id, change_type == "created", select, 0)
            self.start(box, state)
        state.page_size = size
        page, state.pending = state.pending[:size], state.pending[size:]
        token = secrets.token_urlsafe(12)
        self.states[token] = state
        link = f"{base}/v1.0/users/{quote(mailbox, safe='@')}/mailFolders/{state.folder}"
        answer: dict[str, Any] = {"value": page}
        if state.pending:
            answer["@odata.nextLink"] = f"{link}/messages/delta?$skiptoken={token}"
        else:
            answer["@odata.deltaLink"] = f"{link}/messages/delta?$deltatoken={token}"
        status, reply_headers, content = _json(200, answer)
        reply_headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return status, reply_headers, content

    def start(self, box: Mailbox, state: SyncState) -> None:
        state.mark = next(self.changes)
        state.pending = self.changes_since(box, state)

    def changes_since(self, box: Mailbox, state: SyncState) -> list[dict[str, Any]]:
        entries = []
        inside = sorted(
            (m for m in box.messages.values() if m.folder == state.folder), key=lambda m: m.added
        )
        for message in inside:
            new = message.added > state.since
            if new or (not state.created_only and message.updated > state.since):
                entries.append(self.entry(message, state.select))
        if state.since and not state.created_only:
            for change, message_id, folder in box.removed:
                if change > state.since and folder == state.folder:
                    entries.append({"id": message_id, "@removed": {"reason": "deleted"}})
        return entries

    def entry(self, message: StoredMessage, select: list[str]) -> dict[str, Any]:
        full = {
            "id": message.id,
            "internetMessageId": message.internet_message_id,
            "isRead": message.is_read,
            "receivedDateTime": message.received,
            "subject": "",
        }
        return {k: v for k, v in full.items() if not select or k in select or k == "id"}

    def message_call(
        self, method: str, box: Mailbox, message_id: str, rest: list[str], body: Any
    ) -> Reply:
        message = box.messages.get(message_id)
        if message is None:
            raise GraphRefusal(404, "ErrorItemNotFound", "The specified object was not found.")
        if method == "GET" and rest == ["$value"]:
            self.downloads.append(message.id)
            return 200, {"Content-Type": "text/plain"}, message.raw
        if method == "GET" and not rest:
            return _json(200, self.entry(message, []))
        if method == "PATCH" and not rest:
            if not isinstance(body, dict) or set(body) - {"isRead"}:
                raise GraphRefusal(400, "RequestBodyRead", "only isRead may change here")
            if not isinstance(body.get("isRead", False), bool):
                raise GraphRefusal(400, "RequestBodyRead", "isRead must be a boolean")
            if "isRead" in body and body["isRead"] != message.is_read:
                message.is_read = body["isRead"]
                message.updated = next(self.changes)
            self.settled.append(("seen", message.id))
            return _json(200, self.entry(message, []))
        if method == "DELETE" and not rest:
            del box.messages[message.id]
            box.removed.append((next(self.changes), message.id, message.folder))
            self.settled.append(("delete", message.id))
            return 204, {}, b""
        if method == "POST" and rest == ["move"]:
            target = body.get("destinationId") if isinstance(body, dict) else None
            if not isinstance(target, str) or set(body) != {"destinationId"}:
                raise GraphRefusal(400, "RequestBodyRead", "move needs a destinationId")
            folder = self.folder(box, target)
            del box.messages[message.id]
            box.removed.append((next(self.changes), message.id, message.folder))
            change = next(self.changes)
            moved = replace(
                message, id="AAMkM" + secrets.token_hex(8), folder=folder.id, added=change,
                updated=change,
            )  # fmt: skip
            box.messages[moved.id] = moved
            self.settled.append(("move", message.id))
            return _json(201, self.entry(moved, []))
        raise GraphRefusal(405, "ErrorInvalidRequest", "The OData request is not supported.")


def _page_size(headers: Any) -> int:
    for part in str(headers.get("Prefer", "")).split(","):
        name, _, value = part.strip().partition("=")
        if name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
            return min(int(value), 1000)
    return DEFAULT_PAGE


def _json(status: int, data: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()
