"""Reading an account's mailbox folder through Microsoft Graph's delta query.

The first round lists every message in the folder, page by page (``@odata.nextLink``),
and ends with an ``@odata.deltaLink``; later rounds start from that link and list what
arrived since. The request asks ``changeType=created`` (Graph keeps it in its links), so
a message Postroom has just marked read or moved never comes back as an update, and
nothing is skipped for being read already: a reply someone opened in Outlook before the
listener came round is still taken. A link Graph no longer honours (410) restarts the
folder from the beginning; ingest is idempotent, so nothing is taken twice.

Raw MIME comes from ``/messages/{id}/$value``, streamed and cut off past the account's
``max_message_bytes`` (Graph's message has no size to ask first). httpx2's exceptions
are translated here, once, as in :mod:`postroom.transports.graph`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import quote

import httpx2

from postroom.accounts.models import EmailAccount
from postroom.auth.endpoints import check_endpoint
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import TokenCache
from postroom.errors import ConfigurationError, TransientDeliveryError
from postroom.inbound.graph_http import GraphAnswer, GraphClient, SyncStateLostError
from postroom.inbound.models import Cursor, FetchedMessage
from postroom.inbound.settings import AfterIngest, InboundProtocol, InboundSettings

log = logging.getLogger("postroom.inbound.graph")

SELECT = "id,internetMessageId,isRead,receivedDateTime"
# Graph's well-known folder names; any other folder is looked up by display name.
WELL_KNOWN_FOLDERS = frozenset(
    {
        "inbox", "archive", "clutter", "conversationhistory", "deleteditems", "drafts",
        "junkemail", "outbox", "sentitems", "scheduled", "searchfolders",
    }
)  # fmt: skip
MAX_PAGES = 10_000  # per fetch: the saved cursor carries on in the next round
MAX_BATCH_BYTES = 64 * 1024 * 1024  # a batch is handed over before it holds more raw bytes


class GraphSource:
    """An account's mailbox folder read through Microsoft Graph (implements MailSource)."""

    def __init__(
        self,
        account: EmailAccount,
        profile: AuthProfile,
        *,
        tokens: TokenCache,
        allowed_hosts: Collection[str],
        timeout: float,
        http_transport: httpx2.AsyncBaseTransport | None = None,
        max_inline_wait: float = 10.0,
    ) -> None:
        settings = account.inbound
        if settings is None or settings.protocol is not InboundProtocol.GRAPH:
            raise ConfigurationError(f"account {account.name} does not read its mail via Graph")
        self.account = account
        self.settings: InboundSettings = settings
        self._allowed = allowed_hosts
        self._http = GraphClient(
            profile,
            tokens=tokens,
            allowed_hosts=allowed_hosts,
            timeout=timeout,
            http_transport=http_transport,
            max_inline_wait=max_inline_wait,
        )
        self._users = account.graph_mailbox_url
        self._folder: str | None = None
        self._move_to: str | None = None
        self._stopped = asyncio.Event()

    async def open(self) -> None:
        check_endpoint(self.account.graph_url, allowed=self._allowed, what="graph_url")
        self._folder = await self.resolve(self.settings.folder)
        if self.settings.after is AfterIngest.MOVE and self.settings.move_to:
            self._move_to = await self.resolve(self.settings.move_to)

    async def close(self) -> None:
        with suppress(Exception):
            await self._http.close()

    def stop(self) -> None:
        """End a :meth:`wait` now: the listener is stopping."""
        self._stopped.set()

    async def wait(self, timeout: float) -> None:
        # Graph offers no IDLE: the listener polls, and stop() ends a wait early.
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=max(timeout, 0.0))

    # --- folders ------------------------------------------------------------------------

    async def resolve(self, folder: str) -> str:
        """The id (or well-known name) of a folder given as a name or a path ``A/B``."""
        parts = [p.strip() for p in folder.split("/") if p.strip()]
        if not parts:
            raise ConfigurationError(f"inbound folder {folder!r} names no folder")
        current: str | None = None
        for index, name in enumerate(parts):
            if index == 0 and name.lower() in WELL_KNOWN_FOLDERS:
                current = name.lower()
                continue
            base = f"{self._users}/mailFolders"
            if current is not None:
                base += f"/{quote(current, safe='')}/childFolders"
            escaped = name.replace("'", "''")  # OData string literals double their quotes
            answer = await self._http.call(
                "GET", base, params={"$filter": f"displayName eq '{escaped}'"}, stage="folder"
            )
            found = [f for f in _value(answer) if isinstance(f.get("id"), str)]
            if not found:
                where = "/".join(parts[:index]) or "the mailbox"
                raise ConfigurationError(
                    f"Graph has no folder {name!r} in {where} of {self.account.mailbox}: "
                    "check the inbound folder (a well-known name such as INBOX, or a display "
                    "name; A/B for a folder inside another)"
                )
            current = str(found[0]["id"])
        assert current is not None
        return current

    async def folder_info(self) -> Mapping[str, Any]:
        """The folder as Graph describes it (display name, item counts)."""
        answer = await self._http.call("GET", self._folder_url(), stage="folder")
        return answer.json()

    def _folder_url(self) -> str:
        if self._folder is None:
            raise ConfigurationError("the Graph source is not open")
        return f"{self._users}/mailFolders/{quote(self._folder, safe='')}"

    # --- reading ------------------------------------------------------------------------

    def _start(self) -> str:
        # $select keeps pages small; changeType=created keeps our own changes out of them.
        return (
            f"{self._folder_url()}/messages/delta?changeType=created"
            f"&$select={quote(SELECT, safe=',')}"
        )

    async def fetch(self, cursor: Cursor, *, batch: int) -> AsyncIterator[list[FetchedMessage]]:
        """New messages after ``cursor``; each page's last message carries the link after it."""
        batch = max(1, batch)
        link = self._resume(cursor)
        resynced = link is None
        link = link or self._start()
        pages = 0
        while pages < MAX_PAGES:
            pages += 1
            self._check_link(link)
            try:
                answer = await self._http.call(
                    "GET",
                    link,
                    headers={"Prefer": f"odata.maxpagesize={batch}"},
                    stage="delta",
                    sync=True,
                )
            except SyncStateLostError as exc:
                if resynced:
                    raise TransientDeliveryError(
                        f"Graph refused a fresh delta query of the folder: {exc}", stage="delta"
                    ) from None
                log.warning(
                    "Graph no longer knows the delta link of %s (%s): reading the folder "
                    "again; messages already taken are recognised",
                    self.account.name,
                    exc,
                )
                resynced = True
                link = self._start()
                continue
            data = answer.json()
            after = data.get("@odata.nextLink") or data.get("@odata.deltaLink")
            if not isinstance(after, str) or not after:
                raise TransientDeliveryError(
                    "Graph answered a delta page with neither a next nor a delta link",
                    stage="delta",
                )
            self._check_link(after)
            async for chunk in self._page(_value(answer), after, batch):
                yield chunk
            if "@odata.deltaLink" in data and "@odata.nextLink" not in data:
                return
            link = after

    async def _page(
        self, entries: list[dict[str, Any]], after: str, batch: int
    ) -> AsyncIterator[list[FetchedMessage]]:
        # Removed entries name messages gone from the folder: nothing to read.
        ids = [
            str(e["id"])
            for e in sorted(entries, key=lambda e: str(e.get("receivedDateTime") or ""))
            if "@removed" not in e and isinstance(e.get("id"), str) and e["id"]
        ]
        chunk: list[FetchedMessage] = []
        held = 0
        last: FetchedMessage | None = None  # held back: it may be the page's last
        for message_id in ids:
            item = await self._download(message_id)
            if item is None:
                continue
            if last is not None:
                chunk.append(last)
                held += len(last.raw or b"")
                if len(chunk) >= batch or held >= MAX_BATCH_BYTES:
                    yield chunk
                    chunk, held = [], 0
            last = item
        if last is not None:
            # The link after this page goes with the page's last message: saved in its
            # ingest, so a crash re-reads at most this page.
            chunk.append(FetchedMessage(last.key, last.size, last.raw, Cursor(None, after)))
        if chunk:
            yield chunk

    async def _download(self, message_id: str) -> FetchedMessage | None:
        url = f"{self._users}/messages/{quote(message_id, safe='')}/$value"
        limit = self.settings.max_message_bytes
        answer = await self._http.call("GET", url, stage="message", limit=limit, missing_ok=True)
        if answer.status == 404:
            # Moved or deleted by someone since the delta page: nothing left to read.
            return None
        if answer.truncated:
            return FetchedMessage(message_id, answer.size, None)
        return FetchedMessage(message_id, len(answer.content), answer.content)

    def _resume(self, cursor: Cursor) -> str | None:
        """The stored link to go on from, or None to read the folder from the beginning."""
        link = cursor.position
        if not link:
            return None
        if cursor.validity is not None or not link.startswith(f"{self.account.graph_url}/"):
            # Stored by an IMAP source, or before graph_url changed: the token must not
            # go there, and the folder read again takes nothing twice.
            log.warning(
                "inbound %s: the stored position is not a delta link of %s; reading the "
                "folder from the beginning",
                self.account.name,
                self.account.graph_url,
            )
            return None
        return link

    def _check_link(self, link: str) -> None:
        # A link carries the token with it: only ever to the account's Graph host.
        if not link.startswith(f"{self.account.graph_url}/"):
            raise ConfigurationError(
                f"Graph answered a link outside {self.account.graph_url}: refusing to follow it"
            )
        check_endpoint(link.split("?", 1)[0], allowed=self._allowed, what="Graph delta link")

    # --- settling -----------------------------------------------------------------------

    async def settle(self, keys: Sequence[str]) -> None:
        """Mark read, move or delete; a message already gone is already settled."""
        for key in keys:
            url = f"{self._users}/messages/{quote(key, safe='')}"
            after = self.settings.after
            if after is AfterIngest.SEEN:
                await self._settle("PATCH", url, {"isRead": True})
            elif after is AfterIngest.MOVE:
                if self._move_to is None:
                    raise ConfigurationError("the Graph source is not open")
                await self._settle("POST", f"{url}/move", {"destinationId": self._move_to})
            else:
                await self._settle("DELETE", url, None)

    async def _settle(self, method: str, url: str, body: Any) -> None:
        await self._http.call(method, url, json=body, stage="settle", missing_ok=True)


def _value(answer: GraphAnswer) -> list[dict[str, Any]]:
    value = answer.json().get("value")
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []
