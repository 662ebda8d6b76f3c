"""The inbound half of a Graph account's connectivity test: token, folder, permission.

Each step says what it found; a failed one says what to do, as the sending test does.
"""

from __future__ import annotations

from collections.abc import Collection

import httpx2

from postroom.accounts.connectivity import Step
from postroom.accounts.graph_check import endpoint_and_token_steps
from postroom.accounts.models import EmailAccount
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import TokenCache
from postroom.errors import ConfigurationError, DeliveryError
from postroom.inbound.graph import GraphSource
from postroom.inbound.graph_http import READ_ACCESS, WRITE_ACCESS

WRITE_ROLES = frozenset({"Mail.ReadWrite"})
READ_ROLES = frozenset({"Mail.Read", "Mail.ReadWrite"})


async def graph_inbound_steps(
    account: EmailAccount,
    profile: AuthProfile,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    timeout: float,
    http_transport: httpx2.AsyncBaseTransport | None = None,
) -> list[Step]:
    """Get a token, find the folder (and move_to), check the permission, in that order."""
    if account.inbound is None:
        return [Step("inbound", False, "the account has no inbound settings")]
    steps, token = await endpoint_and_token_steps(
        account, profile, tokens=tokens, allowed_hosts=allowed_hosts
    )
    if token is None:
        return steps
    source = GraphSource(
        account,
        profile,
        tokens=tokens,
        allowed_hosts=allowed_hosts,
        timeout=timeout,
        http_transport=http_transport,
    )
    try:
        steps.append(await _folder(source))
    finally:
        await source.close()
    if not steps[-1].ok:
        return steps
    roles = token.claims.get("roles")
    granted = set(roles) if isinstance(roles, list) else set()
    shown = ", ".join(sorted(granted)) or "(none)"
    if granted & WRITE_ROLES:
        steps.append(
            Step("permission", True, "the token carries the Mail.ReadWrite application permission")
        )
    else:
        explanation = WRITE_ACCESS if granted & READ_ROLES else READ_ACCESS
        steps.append(Step("permission", False, f"the token's roles are {shown}", explanation))
    return steps


async def _folder(source: GraphSource) -> Step:
    settings = source.settings
    try:
        await source.open()
        info = await source.folder_info()
    except ConfigurationError as exc:
        return Step("folder", False, f"folder {settings.folder}", str(exc))
    except DeliveryError as exc:
        if exc.code == 403:
            said = exc.text.replace(f" ({READ_ACCESS})", "")
            return Step("folder", False, f"folder {settings.folder}: {said}", READ_ACCESS)
        return Step(
            "folder",
            False,
            f"folder {settings.folder}: {exc.text}",
            "check user_principal_name, graph_url and the network, then test again",
        )
    name = info.get("displayName") or settings.folder
    total, unread = info.get("totalItemCount"), info.get("unreadItemCount")
    counts = f": {total} messages, {unread} unread" if total is not None else ""
    detail = f"{source.account.mailbox} folder {name}{counts}"
    if settings.move_to:
        detail += f"; moves what it read to {settings.move_to}"
    return Step("folder", True, detail)
