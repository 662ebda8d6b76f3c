"""Which connectivity test an account gets: SMTP stages, with XOAUTH2's token, or Graph's;
then its inbound side's."""

from __future__ import annotations

from collections.abc import Collection

from postroom.accounts.connectivity import ConnectivityReport, Step, check_connectivity
from postroom.accounts.graph_check import check_graph, token_step
from postroom.accounts.models import EmailAccount, Protocol
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import AccessToken, TokenCache
from postroom.inbound.check import check_inbound
from postroom.inbound.settings import InboundProtocol


async def check_account(
    account: EmailAccount,
    profile: AuthProfile | None,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    smtp_timeout: float,
    http_timeout: float,
    inbound_profile: AuthProfile | None = None,
) -> ConnectivityReport:
    """Test ``account`` as the agent would connect with it: sending, then reading mail."""
    outbound = await _check_outbound(
        account,
        profile,
        tokens=tokens,
        allowed_hosts=allowed_hosts,
        smtp_timeout=smtp_timeout,
        http_timeout=http_timeout,
    )
    graph_inbound = (
        account.inbound is not None and account.inbound.protocol is InboundProtocol.GRAPH
    )
    inbound = await check_inbound(
        account,
        inbound_profile,
        tokens=tokens,
        allowed_hosts=allowed_hosts,
        timeout=http_timeout if graph_inbound else smtp_timeout,
    )
    return ConnectivityReport(outbound.steps + tuple(inbound))


async def _check_outbound(
    account: EmailAccount,
    profile: AuthProfile | None,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    smtp_timeout: float,
    http_timeout: float,
) -> ConnectivityReport:
    if account.protocol is Protocol.GRAPH:
        assert profile is not None, "a Graph account always names a profile"
        return await check_graph(
            account, profile, tokens=tokens, allowed_hosts=allowed_hosts, timeout=http_timeout
        )
    if profile is None:
        return await check_connectivity(account, timeout=smtp_timeout)
    bound = profile

    async def oauth() -> tuple[Step, AccessToken | None]:
        return await token_step(bound, tokens)

    return await check_connectivity(account, timeout=smtp_timeout, oauth=oauth)
