"""Small real implementations for the listener's own tests: a mail source held in memory
and an ingest that keeps each message's key in ``inbound_messages`` (dedupe included).

They implement the same interfaces as the IMAP source and the ingestor, so the listener's
rounds, leases and waits are tested without a mail server; the round trip through Dovecot
and the real ingest is tested in tests/test_inbound_roundtrip.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select, update

from postroom.db import tables
from postroom.db.types import utcnow
from postroom.inbound.models import Cursor, FetchedMessage, InboundStatus, MailboxRef

t = tables.inbound_messages


@dataclass
class MemorySource:
    """A folder of messages by UID, validity "1"; ``settle`` marks them seen."""

    messages: dict[int, bytes] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    opened: int = 0
    fetches: int = 0
    arrived: asyncio.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, raw: bytes) -> int:
        with self.lock:
            uid = max(self.messages, default=0) + 1
            self.messages[uid] = raw
        return uid

    async def open(self) -> None:
        self.opened += 1
        self.arrived = asyncio.Event()

    async def close(self) -> None:
        pass

    async def fetch(self, cursor: Cursor, *, batch: int) -> AsyncIterator[list[FetchedMessage]]:
        self.fetches += 1
        after = int(cursor.position or 0) if cursor.validity == "1" else 0
        with self.lock:
            new = sorted(u for u in self.messages if u > after)
        for start in range(0, len(new), batch):
            yield [
                FetchedMessage(str(u), len(self.messages[u]), self.messages[u], Cursor("1", str(u)))
                for u in new[start : start + batch]
            ]

    async def settle(self, keys: Sequence[str]) -> None:
        self.seen.update(int(k) for k in keys)

    async def wait(self, timeout: float) -> None:
        assert self.arrived is not None
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout)
        except TimeoutError:
            return
        self.arrived.clear()


@dataclass(frozen=True)
class Result:
    id: int
    status: InboundStatus
    duplicate: bool
    settle: bool = True
    immediate: tuple[int, ...] = ()
    case_id: str | None = None


@dataclass
class KeyIngest:
    """Keeps each message once per mailbox (its raw bytes as the key), then runs ``within``."""

    engine: Engine
    calls: int = 0
    before_commit: Callable[[], None] | None = None

    def ingest(
        self,
        mailbox: MailboxRef,
        item: FetchedMessage,
        *,
        validity: str | None,
        within: Callable[[Connection], None] | None = None,
    ) -> Result:
        self.calls += 1
        key = (item.raw or b"").decode()
        with self.engine.begin() as conn:
            found = conn.execute(
                select(t.c.id).where(t.c.mailbox == mailbox.key, t.c.dedupe_key == key)
            ).scalar()
            if found is None:
                found = conn.execute(
                    insert(t).returning(t.c.id).values(
                        mailbox=mailbox.key, account=mailbox.account, folder=mailbox.folder,
                        dedupe_key=key, source_key=item.key, validity=validity, subject=key,
                        recipients=[], received_at=utcnow(), size=item.size, raw=item.raw,
                        text="", status="unmatched", reason="test", defects=[],
                        attachments=0, server_state="pending", updated_at=utcnow(),
                    )
                ).scalar_one()  # fmt: skip
                duplicate = False
            else:
                duplicate = True
            if within is not None:
                within(conn)
            if self.before_commit is not None:
                self.before_commit()
        return Result(int(found), InboundStatus.UNMATCHED, duplicate)


class KeyStore:
    """Pending and settled rows of ``inbound_messages``, as the listener asks for them."""

    def pending_keys(
        self, conn: Connection, mailbox: MailboxRef, validity: str | None
    ) -> list[tuple[int, str]]:
        rows = conn.execute(
            select(t.c.id, t.c.source_key).where(
                t.c.mailbox == mailbox.key,
                t.c.validity == validity,
                t.c.server_state == "pending",
            )
        )
        return [(r.id, r.source_key) for r in rows]

    def mark_settled(self, conn: Connection, ids: Sequence[int]) -> None:
        conn.execute(update(t).where(t.c.id.in_(list(ids))).values(server_state="done"))
