"""The one interface a mailbox is read through: IMAP and Graph each implement it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from postroom.inbound.models import Cursor, FetchedMessage


class MailSource(Protocol):
    """A connection to one mailbox folder.

    The listener calls :meth:`open`, then in each round :meth:`fetch` from the stored
    cursor, ingests and commits each message, calls :meth:`settle` with the keys of the
    committed ones, and :meth:`wait` for more. Library exceptions are translated by the
    source into :class:`~postroom.errors.DeliveryError` kinds (credentials refused,
    transient, configuration), never leaked.
    """

    async def open(self) -> None:
        """Connect, authenticate and select the folder."""

    async def close(self) -> None:
        """Log out and close, quietly: the listener may be stopping after an error."""

    def fetch(self, cursor: Cursor, *, batch: int) -> AsyncIterator[list[FetchedMessage]]:
        """New messages after ``cursor``, oldest first, in batches of at most ``batch``.

        A cursor the server no longer honours (UIDVALIDITY changed, Graph 410) restarts
        from the beginning: ingest is idempotent, so nothing is taken twice.
        """
        ...

    async def settle(self, keys: Sequence[str]) -> None:
        """Do the account's ``after`` (seen, move, delete) to these messages.

        Idempotent: a key already settled, moved or gone is not an error.
        """

    async def wait(self, timeout: float) -> None:
        """Return when new mail may have arrived (IMAP IDLE) or after ``timeout``."""
