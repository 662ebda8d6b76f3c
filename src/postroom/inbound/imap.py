"""An account's inbound folder read over IMAP (imapclient), for the listener.

imapclient blocks and is not thread-safe: every call on a connection runs in the
source's own worker thread, one at a time, and the event loop awaits it. Failures are
translated once, here, into Postroom's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from imapclient import DELETED, SEEN, IMAPClient  # type: ignore[import-untyped]

from postroom.accounts.models import EmailAccount
from postroom.errors import ConfigurationError, TransientDeliveryError
from postroom.inbound.imap_errors import (
    IMAPClientError,
    inbound_context,
    translate,
    where,
)
from postroom.inbound.imap_session import IDLE_SLICE, Worker, idle_until, new_mail
from postroom.inbound.models import Cursor, FetchedMessage
from postroom.inbound.settings import AfterIngest, InboundProtocol, InboundSecurity

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Servers may end an IDLE after 30 minutes (RFC 2177): it is renewed well before.
IDLE_RENEW = 600.0
NOOP_EVERY = 300.0  # keeps a polled connection alive between rounds
BATCH_BYTES = 32 * 1024 * 1024  # the bodies one FETCH brings at most (one larger message alone)
SETTLE_CHUNK = 500  # UIDs per STORE, MOVE or EXPUNGE command
CLOSE_TIMEOUT = 5.0


class ImapSource:
    """One account's inbound IMAP folder: implements :class:`~postroom.inbound.MailSource`."""

    def __init__(
        self,
        account: EmailAccount,
        *,
        token: Callable[[], Awaitable[str]] | None,
        timeout: float,
        max_message_bytes: int | None = None,
    ) -> None:
        inbound = account.inbound
        if inbound is None or inbound.protocol is not InboundProtocol.IMAP:
            raise ConfigurationError(f"account {account.name} has no IMAP inbound section")
        self.account = account
        self.inbound = inbound
        self.login_name = account.inbound_login
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes or inbound.max_message_bytes
        self._token = token
        self._password = (inbound.password.get_secret_value(),) if inbound.password else ()
        self._secrets: tuple[str, ...] = self._password  # never in an error's text
        self._client: Any = None
        self._worker: Worker | None = None
        self._stopping = threading.Event()
        self._move_target_checked = False
        self._high = 0  # the highest UID fetch has handed over
        self.validity: int | None = None  # the folder's UIDVALIDITY at the last SELECT
        self.idle_offered = False
        self.idling = False  # inside an IDLE command right now (for diagnostics and tests)

    # --- running calls in the worker -----------------------------------------------------

    async def _call(self, stage: str, fn: Callable[..., _T], *args: Any) -> _T:
        worker = self._worker
        if worker is None:
            raise TransientDeliveryError("the IMAP connection is closed", stage=stage)
        try:
            return await worker.submit(lambda: fn(*args))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate(
                exc,
                inbound=self.inbound,
                stage=stage,
                login=self.login_name,
                secrets=self._secrets,
            )
            if error is exc:
                raise
            raise error from None  # the library's text may quote what was sent

    @property
    def _imap(self) -> Any:
        if self._client is None:
            raise TransientDeliveryError("the IMAP connection is closed", stage="imap")
        return self._client

    # --- open and close ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, protect, log in and select the folder (read-write)."""
        if self._worker is not None:
            await self.close()
        self._stopping.clear()
        token: str | None = None
        if self.inbound.auth_profile:
            if self._token is None:
                raise ConfigurationError(
                    f"account {self.account.name}: inbound auth_profile needs a token source"
                )
            token = await self._token()
            self._secrets = (*self._password, token)
        self._worker = Worker(f"imap-{self.account.name}")
        try:
            await self._call("connect", self._connect)
            await self._call("login", self._login, token)
            await self._call("select", self._select)
        except BaseException:
            await self.close()
            raise
        log.info(
            "IMAP %s: %s as %s, folder %s (UIDVALIDITY %s), IDLE %s",
            self.account.name,
            where(self.inbound),
            self.login_name,
            self.inbound.folder,
            self.validity,
            "offered" if self.idle_offered else "not offered",
        )

    def _connect(self) -> None:
        inbound = self.inbound
        secure = inbound.security is not InboundSecurity.NONE
        context = inbound_context(inbound) if secure else None
        client = IMAPClient(
            inbound.host,
            port=inbound.port,
            ssl=inbound.security is InboundSecurity.TLS,
            ssl_context=context,
            timeout=self.timeout,
        )
        self._client = client
        if inbound.security is InboundSecurity.STARTTLS:
            if not client.has_capability("STARTTLS"):
                raise ConfigurationError(
                    f"inbound {where(inbound)} does not offer STARTTLS: Postroom never logs in "
                    "unencrypted; set inbound security to tls if the port uses implicit TLS"
                )
            client.starttls(context)

    def _login(self, token: str | None) -> None:
        client = self._imap
        if token is not None:
            client.oauth2_login(self.login_name, token)
        else:
            assert self.inbound.password is not None, "settings require a password or a profile"
            client.login(self.login_name, self.inbound.password.get_secret_value())
        self.idle_offered = bool(client.has_capability("IDLE"))

    def _select(self) -> int:
        client = self._imap
        folder = self.inbound.folder
        try:
            info = client.select_folder(folder)
        except IMAPClientError:
            if not client.folder_exists(folder):
                raise self._missing(folder, "inbound folder") from None
            raise
        if info.get(b"READ-ONLY"):
            raise ConfigurationError(
                f"inbound folder {folder!r} is read-only for {self.login_name}: Postroom must "
                "flag, move or delete what it has read"
            )
        self.validity = int(info[b"UIDVALIDITY"])
        return self.validity

    def _missing(self, folder: str, what: str) -> ConfigurationError:
        return ConfigurationError(
            f"{what} {folder!r} does not exist in the mailbox of {self.login_name} on "
            f"{where(self.inbound)}: create it there, or correct {what}"
        )

    def stop(self) -> None:
        """Make a wait in progress (and every later one) return within a second."""
        self._stopping.set()

    async def close(self) -> None:
        """Log out, then shut the socket; never fails."""
        self._stopping.set()
        worker, self._worker = self._worker, None
        if worker is None:
            return
        client = self._client
        try:
            await asyncio.wait_for(worker.submit(self._logout), CLOSE_TIMEOUT)
        except Exception:  # a hung or broken connection: cut it from this side
            log.debug("IMAP %s: logout did not finish; closing the socket", self.account.name)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.shutdown()
        finally:
            worker.stop()
            self._client = None

    def _logout(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # the verdict is in; LOGOUT is a courtesy
            with contextlib.suppress(Exception):
                client.shutdown()

    # --- reading -------------------------------------------------------------------------

    async def fetch(self, cursor: Cursor, *, batch: int) -> AsyncIterator[list[FetchedMessage]]:
        """Messages after ``cursor``, oldest first, in batches of at most ``batch``."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        validity, uids = await self._call("fetch", self._new_uids, cursor)
        for start in range(0, len(uids), batch):
            sizes = await self._call("fetch", self._sizes, uids[start : start + batch])
            for group in self._groups(sizes):
                bodies = await self._call(
                    "fetch", self._bodies, [uid for uid, size in group if self._fits(size)]
                )
                items = [
                    FetchedMessage(
                        key=str(uid),
                        size=size,
                        raw=bodies.get(uid),
                        cursor=Cursor(validity=str(validity), position=str(uid)),
                    )
                    for uid, size in group
                    # Expunged between SEARCH and FETCH: gone, nothing to read.
                    if uid in bodies or not self._fits(size)
                ]
                if items:
                    yield items

    def _fits(self, size: int) -> bool:
        return size <= self.max_message_bytes

    def _groups(self, sizes: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Split a batch so one FETCH of bodies stays within :data:`BATCH_BYTES`."""
        groups: list[list[tuple[int, int]]] = [[]]
        total = 0
        for uid, size in sizes:
            weight = size if self._fits(size) else 0
            if groups[-1] and total + weight > BATCH_BYTES:
                groups.append([])
                total = 0
            groups[-1].append((uid, size))
            total += weight
        return [group for group in groups if group]

    def _new_uids(self, cursor: Cursor) -> tuple[int, list[int]]:
        validity = self._select()
        last = 0
        position = cursor.position or ""
        if cursor.validity == str(validity) and position.isdigit():
            last = int(position)
        elif cursor.validity is not None:
            log.warning(
                "IMAP %s: folder %s has a new UIDVALIDITY (%s, was %s): reading it again",
                self.account.name,
                self.inbound.folder,
                validity,
                cursor.validity,
            )
        # "UID n:*" always matches the highest UID, even below n: keep only newer ones.
        uids = sorted(uid for uid in self._imap.search(["UID", f"{last + 1}:*"]) if uid > last)
        self._high = max(last, uids[-1] if uids else 0)
        return validity, uids

    def _sizes(self, uids: list[int]) -> list[tuple[int, int]]:
        found = self._imap.fetch(uids, ["RFC822.SIZE"])
        return [(uid, int(found[uid][b"RFC822.SIZE"])) for uid in uids if uid in found]

    def _bodies(self, uids: list[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        found = self._imap.fetch(uids, ["BODY.PEEK[]"])
        return {
            uid: bytes(data[b"BODY[]"])
            for uid, data in found.items()
            if data.get(b"BODY[]") is not None
        }

    # --- settling ------------------------------------------------------------------------

    async def settle(self, keys: Sequence[str]) -> None:
        """Flag, move or delete these messages (``after``); keys already gone are fine."""
        uids = sorted({int(key) for key in keys if key.isdigit()})
        for start in range(0, len(uids), SETTLE_CHUNK):
            await self._call("settle", self._settle, uids[start : start + SETTLE_CHUNK])

    def _settle(self, uids: list[int]) -> None:
        client = self._imap
        after = self.inbound.after
        if after is AfterIngest.SEEN:
            client.add_flags(uids, [SEEN], silent=True)
        elif after is AfterIngest.MOVE:
            target = self.inbound.move_to
            assert target is not None, "settings require move_to for after: move"
            if not self._move_target_checked:
                # Nothing is created silently: a missing folder is the operator's to fix.
                if not client.folder_exists(target):
                    raise self._missing(target, "inbound move_to")
                self._move_target_checked = True
            if client.has_capability("MOVE"):
                client.move(uids, target)
            else:
                client.copy(uids, target)
                client.add_flags(uids, [DELETED], silent=True)
                self._expunge(uids)
        else:
            client.add_flags(uids, [DELETED], silent=True)
            self._expunge(uids)

    def _expunge(self, uids: list[int]) -> None:
        client = self._imap
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # only these: not what someone else marked deleted
        else:
            client.expunge()

    # --- waiting -------------------------------------------------------------------------

    async def wait(self, timeout: float) -> None:
        """Return when new mail arrived (IDLE), after ``timeout``, or soon after :meth:`stop`."""
        cancelled = threading.Event()
        try:
            await self._call("wait", self._wait, max(0.0, timeout), cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the worker leaves IDLE within a slice, keeping the session
            raise

    def _wait(self, timeout: float, cancelled: threading.Event) -> None:
        deadline = time.monotonic() + timeout

        def halted() -> bool:
            return self._stopping.is_set() or cancelled.is_set()

        if not self.idle_offered:
            self._sleep(deadline, halted)
            return
        if self._has_new():
            return
        while not halted():
            left = deadline - time.monotonic()
            if left <= 0 or self._idle_once(min(left, IDLE_RENEW), halted):
                return

    def _sleep(self, deadline: float, halted: Callable[[], bool]) -> None:
        last_noop = time.monotonic()
        while not halted():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stopping.wait(min(IDLE_SLICE, left))
            if time.monotonic() - last_noop > NOOP_EVERY:
                self._imap.noop()
                last_noop = time.monotonic()

    def _has_new(self) -> bool:
        """Whether mail came after what fetch handed over (before IDLE could report it)."""
        # A server reports new mail after a command's result (the SEARCH below would not
        # see it): NOOP first brings the session up to date.
        _, responses = self._imap.noop()
        if new_mail(responses):
            return True
        found = self._imap.search(["UID", f"{self._high + 1}:*"])
        return any(uid > self._high for uid in found)

    def _idle_once(self, span: float, halted: Callable[[], bool]) -> bool:
        """One IDLE command of at most ``span`` seconds; ``True`` when new mail arrived."""
        client = self._imap
        client.idle()
        self.idling = True
        try:
            new = idle_until(client, time.monotonic() + span, halted)
        except BaseException:
            self.idling = False
            # The session is in no known state: drop it; the listener opens a new one.
            with contextlib.suppress(Exception):
                client.shutdown()
            self._client = None
            raise
        self.idling = False
        _, responses = client.idle_done()
        return new or new_mail(responses)
