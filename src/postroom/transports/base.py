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

from postroom.accounts.models import EmailAccount
from postroom.outbox.models import DeliveryReport


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one SMTP transaction carries."""

    mail_from: str
    recipients: tuple[str, ...]
    message: bytes


class Transport(Protocol):
    """Sends envelopes for one account, reusing its connection between sends."""

    async def send(self, envelope: Envelope) -> DeliveryReport: ...

    async def close(self) -> None: ...


TransportFactory = Callable[[EmailAccount], Transport]
"""Makes a transport for an account; the agent calls it once per connection it opens."""
