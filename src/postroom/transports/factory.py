"""The default transport factory: SMTP or Microsoft Graph, by the account's protocol."""

from __future__ import annotations

from collections.abc import Collection

import httpx2

from postroom.accounts.models import Protocol
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import AccessToken, TokenCache
from postroom.errors import ConfigurationError
from postroom.transports.base import Sender, Transport
from postroom.transports.gate import GRAPH_CONCURRENCY, MailboxGates
from postroom.transports.graph import GraphTransport
from postroom.transports.smtp import SmtpTransport, TokenSource


class Transports:
    """Makes transports; every transport it makes shares its tokens and mailbox gates."""

    def __init__(
        self,
        *,
        smtp_timeout: float = 30.0,
        http_timeout: float = 30.0,
        allowed_hosts: Collection[str] = (),
        tokens: TokenCache | None = None,
        gates: MailboxGates | None = None,
        http_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.smtp_timeout = smtp_timeout
        self.http_timeout = http_timeout
        self.allowed_hosts = frozenset(allowed_hosts)
        self.tokens = tokens or TokenCache(
            allowed_hosts=self.allowed_hosts, timeout=http_timeout, transport=http_transport
        )
        self.gates = gates or MailboxGates(limit=GRAPH_CONCURRENCY)
        self._http_transport = http_transport

    def __call__(self, sender: Sender) -> Transport:
        account, profile = sender.account, sender.profile
        if account.auth_profile and profile is None:
            raise ConfigurationError(
                f"account {account.name} names auth_profile {account.auth_profile!r}, "
                "which was not loaded"
            )
        if account.protocol is Protocol.GRAPH:
            assert profile is not None  # the account model requires a profile for Graph
            return GraphTransport(
                account,
                profile,
                tokens=self.tokens,
                gates=self.gates,
                allowed_hosts=self.allowed_hosts,
                timeout=self.http_timeout,
                http_transport=self._http_transport,
            )
        source = self.token_source(profile) if profile is not None else None
        return SmtpTransport(
            account, timeout=self.smtp_timeout, tokens=source, token_hosts=self.allowed_hosts
        )

    def token_source(self, profile: AuthProfile) -> TokenSource:
        """Tokens of ``profile`` from the shared cache, as an SMTP transport asks for them."""

        async def get(stale: AccessToken | None) -> AccessToken:
            return await self.tokens.get(profile, stale=stale)

        return get
