"""The transport interface: one method to send, one to close.

A transport raises :class:`~postroom.errors.TransientDeliveryError` or
:class:`~postroom.errors.PermanentDeliveryError` for failures that concern the whole
message, and reports per-recipient refusals in the returned
:class:`~postroom.outbox.models.DeliveryReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postroom.accounts.holds import AccountHold
from postroom.accounts.models import EmailAccount
from postroom.auth.models import AuthProfile
from postroom.outbox.models import DeliveryReport


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """Delivery status notifications asked of a server that offers DSN (RFC 3461).

    ``envid`` comes back in every report as Original-Envelope-Id; each recipient is sent
    with ``NOTIFY`` and its own address as ``ORCPT``, so that a report names the address
    Postroom sent to even after forwarding.
    """

    envid: str
    ret: str = "HDRS"  # the report returns the headers, not the whole message
    notify: str = "FAILURE,DELAY"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one SMTP transaction carries."""

    mail_from: str
    recipients: tuple[str, ...]
    message: bytes
    dsn: DsnRequest | None = None  # asked for only where the server offers DSN


class Transport(Protocol):
    """Sends envelopes for one account, reusing its connection between sends."""

    async def send(self, envelope: Envelope) -> DeliveryReport: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Sender:
    """An account as the agent sends with it: the record, its profile, any hold on it."""

    account: EmailAccount
    profile: AuthProfile | None = None
    hold: AccountHold | None = None

    @property
    def settings(self) -> tuple[EmailAccount, AuthProfile | None]:
        """What a transport is built from: open connections are replaced when it changes."""
        return self.account, self.profile


TransportFactory = Callable[[Sender], Transport]
"""Makes a transport for a sender; the agent calls it once per connection it opens."""
