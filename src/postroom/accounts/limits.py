"""How hard an account may be used, across every agent on every host.

Providers limit submission: Office 365 takes 30 messages a minute per mailbox over at
most 3 SMTP connections, Microsoft Graph 4 concurrent requests per mailbox. A limit
delays mail, it never fails it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from postroom.accounts.presets import Provider


class Limits(BaseModel):
    """Connections (or concurrent Graph requests) and messages per minute, in total."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_connections: int | None = Field(None, ge=1, le=64)
    messages_per_minute: int | None = Field(None, ge=1, le=1_000_000)

    @property
    def any(self) -> bool:
        return self.max_connections is not None or self.messages_per_minute is not None


OFFICE365_SMTP = Limits(max_connections=3, messages_per_minute=30)
GRAPH_MAILBOX = Limits(max_connections=4)


def effective_limits(*, provider: Provider, graph: bool, given: Limits | None) -> Limits:
    """The account's own limits, each missing one taken from its provider's, if any."""
    preset = GRAPH_MAILBOX if graph else OFFICE365_SMTP if provider is Provider.OFFICE365 else None
    if preset is None:
        return given or Limits()
    if given is None:
        return preset
    return Limits(
        max_connections=given.max_connections or preset.max_connections,
        messages_per_minute=given.messages_per_minute or preset.messages_per_minute,
    )
