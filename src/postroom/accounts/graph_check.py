"""Connectivity test of a Microsoft Graph account: token, mailbox, permission.

Each step says what it found; a failed step says what to do, as the SMTP test does.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

import httpx2

from postroom.accounts.connectivity import ConnectivityReport, Step
from postroom.accounts.models import EmailAccount
from postroom.auth.endpoints import check_endpoint
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import AccessToken, TokenCache
from postroom.errors import ConfigurationError, DeliveryError
from postroom.transports.graph_errors import EXPLANATIONS, error_body

SEND_ROLES = frozenset({"Mail.Send"})


async def check_graph(
    account: EmailAccount,
    profile: AuthProfile,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    timeout: float,
    http_transport: httpx2.AsyncBaseTransport | None = None,
) -> ConnectivityReport:
    """Get a token, look the mailbox up and check the send permission, in that order."""
    steps, token = await endpoint_and_token_steps(
        account, profile, tokens=tokens, allowed_hosts=allowed_hosts
    )
    if token is None:
        return ConnectivityReport(tuple(steps))
    steps.append(await _mailbox(account, token, timeout, http_transport))
    steps.append(_permission(token))
    return ConnectivityReport(tuple(steps))


async def endpoint_and_token_steps(
    account: EmailAccount,
    profile: AuthProfile,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
) -> tuple[list[Step], AccessToken | None]:
    """The steps every Graph test starts with: graph_url allowed, then a token (None: failed)."""
    try:
        check_endpoint(account.graph_url, allowed=allowed_hosts, what="graph_url")
    except ConfigurationError as exc:
        return [Step("endpoints", False, str(exc), "fix graph_url, or allow the host")], None
    step, token = await token_step(profile, tokens)
    return [step], token


async def token_step(profile: AuthProfile, tokens: TokenCache) -> tuple[Step, AccessToken | None]:
    """The token request as a step, with the token's non-secret claims."""
    try:
        token = await tokens.get(profile)
    except DeliveryError as exc:
        return Step("token", False, f"from {profile.token_endpoint}", exc.text), None
    return Step("token", True, describe_token(token, profile)), token


def describe_token(token: AccessToken, profile: AuthProfile) -> str:
    """The claims an administrator checks: audience, roles, expiry. Never the token."""
    claims = token.claims
    roles = claims.get("roles")
    expires = datetime.fromtimestamp(token.expires_at, UTC)
    minutes = max(0, int((token.expires_at - token.issued_at) // 60))
    return (
        f"token for client {profile.client_id} from {profile.token_endpoint}: "
        f"aud {claims.get('aud', '(not readable)')}, "
        f"roles {', '.join(roles) if isinstance(roles, list) and roles else '(none)'}, "
        f"expires {expires:%Y-%m-%d %H:%M:%S} UTC ({minutes} min)"
    )


async def _mailbox(
    account: EmailAccount,
    token: AccessToken,
    timeout: float,
    http_transport: httpx2.AsyncBaseTransport | None,
) -> Step:
    url = account.graph_mailbox_url
    try:
        async with httpx2.AsyncClient(timeout=timeout, transport=http_transport) as client:
            response = await client.get(url, headers={"Authorization": f"Bearer {token.value}"})
    except httpx2.HTTPError as exc:
        return Step(
            "mailbox",
            False,
            f"GET {url}: {type(exc).__name__}",
            f"cannot reach {account.graph_url}: check graph_url and the network",
        )
    if response.status_code == 200:
        data = response.json() if response.content else {}
        found = data.get("userPrincipalName") or data.get("mail") or account.mailbox
        return Step("mailbox", True, f"{account.mailbox} found: {found}")
    code, message = error_body(response.content)
    detail = f"{response.status_code} {code} {message}".strip()
    if response.status_code == 403 and code not in EXPLANATIONS:
        # Looking users up needs User.Read.All, which sending does not: not a failure.
        return Step(
            "mailbox",
            True,
            f"not checked: {detail}",
            "grant the User.Read.All application permission to let this test look the "
            "mailbox up; sending needs only Mail.Send",
        )
    explanation = EXPLANATIONS.get(code, "")
    return Step("mailbox", False, detail, explanation or "see Graph's answer")


def _permission(token: AccessToken) -> Step:
    roles = token.claims.get("roles")
    granted = set(roles) if isinstance(roles, list) else set()
    if granted & SEND_ROLES:
        return Step("permission", True, "the token carries the Mail.Send application permission")
    return Step(
        "permission",
        False,
        f"the token's roles are {', '.join(sorted(granted)) or '(none)'}",
        "add the Mail.Send application permission (not the delegated one) to the app "
        "registration and grant admin consent; for large attachments add Mail.ReadWrite",
    )
