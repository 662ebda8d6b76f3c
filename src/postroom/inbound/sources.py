"""The mail source of an account: IMAP or Microsoft Graph, as its inbound settings say."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from postroom.accounts.models import EmailAccount
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import TokenCache
from postroom.errors import ConfigurationError
from postroom.inbound.imap import ImapSource
from postroom.inbound.settings import InboundProtocol
from postroom.inbound.source import MailSource


def make_source(
    account: EmailAccount,
    profile: AuthProfile | None,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    imap_timeout: float,
    http_timeout: float,
) -> MailSource:
    """A source for ``account``'s inbound mailbox; ``profile`` is its ``inbound_profile``."""
    inbound = account.inbound
    if inbound is None:
        raise ConfigurationError(
            f"account {account.name} has no inbound settings: give it an inbound section "
            "(protocol, host, folder...) to read its mailbox"
        )
    if inbound.protocol is InboundProtocol.GRAPH:
        if profile is None:
            raise ConfigurationError(f"account {account.name}: Graph inbound needs an auth_profile")
        # Loaded only for Graph accounts: IMAP-only deployments never import its client.
        from postroom.inbound.graph import GraphSource  # noqa: PLC0415

        return GraphSource(
            account, profile, tokens=tokens, allowed_hosts=allowed_hosts, timeout=http_timeout
        )
    return ImapSource(
        account,
        token=None if profile is None else token_getter(profile, tokens),
        timeout=imap_timeout,
        max_message_bytes=inbound.max_message_bytes,
    )


def token_getter(profile: AuthProfile, tokens: TokenCache) -> Callable[[], Awaitable[str]]:
    """A fresh access token of ``profile`` for IMAP's XOAUTH2, from the process's cache."""

    async def get() -> str:
        return (await tokens.get(profile)).value

    return get
