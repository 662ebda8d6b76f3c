"""The inbound listeners as the facade offers them: one poll, and listeners for agents.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from postroom.accounts import AccountStore, EmailAccount
from postroom.agent.agent import new_agent_id
from postroom.agent.immediate import run_in_own_loop
from postroom.auth import AuthProfileStore
from postroom.errors import ConfigurationError, PostroomError, StateError
from postroom.inbound import mailboxes
from postroom.inbound.listener import ListenerConfig, MailboxListener, PollReport
from postroom.inbound.listeners import InboundListeners, ListenerParts
from postroom.inbound.mailboxes import MailboxInfo
from postroom.inbound.models import MailboxRef
from postroom.inbound.source import MailSource
from postroom.settings import Settings
from postroom.transports import Transports

if TYPE_CHECKING:
    from collections.abc import Sequence

    from postroom.inbound.ingest import Ingestor
    from postroom.inbound.store import InboundStore


class Listening:
    """The inbound-listener methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    transports: Transports
    account_store: AccountStore
    profile_store: AuthProfileStore

    if TYPE_CHECKING:  # from Receiving and Postroom

        @property
        def ingestor(self) -> Ingestor: ...

        @property
        def inbound_store(self) -> InboundStore: ...

        def deliver_now(self, outbox_ids: Sequence[int]) -> None: ...

    def inbound_listeners(self, agent_id: str | None = None) -> InboundListeners:
        """The listeners of one agent (one per account with inbound settings)."""
        owner = agent_id or new_agent_id()
        return InboundListeners(
            agent_id=owner,
            load_accounts=self._inbound_accounts,
            make=lambda account: self.listener_parts(account, owner=owner),
        )

    def poll_inbound(self, account: str, *, report: PollReport | None = None) -> PollReport:
        """Read ``account``'s mailbox once (under the mailbox's lease, given back after).

        The counts go into ``report`` (when given) message by message: after an error
        half-way (a ``move_to`` folder missing, the connection lost) it still says what
        was read and ingested before.
        """
        with self.engine.connect() as conn:
            found = self.account_store.get(conn, account)
        if found.inbound is None:
            raise ConfigurationError(
                f"account {account} has no inbound settings: give it an inbound section "
                "(protocol, host, folder...) to read its mailbox"
            )
        parts = self.listener_parts(found, owner=f"poll:{new_agent_id()}")
        return run_in_own_loop(lambda: self._poll(parts, report))

    def inbound_mailboxes(self) -> list[MailboxInfo]:
        """Every mailbox read so far: its reader, cursor, last poll and last error.

        A mailbox no account reads any more (the account was deleted, lost its inbound
        settings or reads another folder now) says so in place of its last error.
        """
        with self.engine.connect() as conn:
            rows = mailboxes.info(conn)
            accounts = self.account_store.list(conn)
        folders = {a.name: a.inbound.folder if a.inbound else None for a in accounts}
        return mailboxes.as_read_now(rows, folders)

    def listener_parts(self, account: EmailAccount, *, owner: str) -> ListenerParts:
        """The listener of ``account``'s mailbox for ``owner``, and how to open its source."""
        from postroom.inbound.sources import make_source  # noqa: PLC0415

        inbound = account.inbound
        if inbound is None:
            raise ConfigurationError(f"account {account.name} has no inbound settings")
        s = self.settings
        listener = MailboxListener(
            engine=self.engine,
            ref=MailboxRef(account.name, inbound.folder),
            owner=owner,
            ingestor=self.ingestor,
            store=self.inbound_store,
            config=ListenerConfig(
                lease_seconds=s.lease_seconds,
                batch=s.inbound_batch,
                poll_seconds=inbound.poll_seconds,
            ),
            deliver=self.deliver_now,
        )
        profile_name = account.inbound_profile

        def source() -> MailSource:
            with self.engine.connect() as conn:
                profile = self.profile_store.get(conn, profile_name) if profile_name else None
            return make_source(
                account,
                profile,
                tokens=self.transports.tokens,
                allowed_hosts=s.endpoint_hosts,
                imap_timeout=s.smtp_timeout,
                http_timeout=s.http_timeout,
            )

        return ListenerParts(listener, source)

    def _inbound_accounts(self) -> list[EmailAccount]:
        with self.engine.connect() as conn:
            return [a for a in self.account_store.list(conn) if a.inbound is not None]

    async def _poll(self, parts: ListenerParts, report: PollReport | None) -> PollReport:
        listener = parts.listener
        if not await listener.acquire():
            with self.engine.connect() as conn:
                [row] = mailboxes.info(conn, listener.ref.key)
            until = f"{row.lease_expires_at:%H:%M:%S} UTC" if row.lease_expires_at else "now"
            raise StateError(
                f"mailbox {listener.ref.key} is being read by {row.lease_owner} (lease until "
                f"{until}): that listener ingests its mail"
            )
        try:
            source = parts.source()
            await source.open()
            try:
                report = await listener.round(source, report=report)
            finally:
                with contextlib.suppress(Exception):
                    await source.close()
            await listener.note(None)
            return report
        except PostroomError as exc:
            with contextlib.suppress(Exception):
                await listener.note(str(exc))
            raise
        finally:
            with contextlib.suppress(Exception):
                await listener.release()
