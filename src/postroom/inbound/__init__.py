"""Two-way correspondence: mail read from an account's mailbox and threaded onto cases."""

from postroom.inbound.models import (
    Cursor,
    FetchedMessage,
    InboundStatus,
    MailboxRef,
    ReceivedMessage,
    ServerState,
)
from postroom.inbound.settings import (
    AfterIngest,
    InboundProtocol,
    InboundSecurity,
    InboundSettings,
)
from postroom.inbound.source import MailSource

__all__ = [
    "AfterIngest",
    "Cursor",
    "FetchedMessage",
    "InboundProtocol",
    "InboundSecurity",
    "InboundSettings",
    "InboundStatus",
    "MailSource",
    "MailboxRef",
    "ReceivedMessage",
    "ServerState",
]
