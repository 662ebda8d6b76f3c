"""Write-only secrets: a record written again without its secrets keeps the stored ones."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

from postroom.accounts import EmailAccount, Protocol


def _keep(data: dict[str, Any], key: str, old: SecretStr | None) -> None:
    # Write-only: omitted means "unchanged", an explicit null removes the secret.
    if key not in data and old is not None:
        data[key] = old


def account_data(body: dict[str, Any], old: BaseModel | None) -> dict[str, Any]:
    """The account to validate: ``body`` with the stored secrets it omits."""
    data = dict(body)
    if not isinstance(old, EmailAccount):
        return data
    # Switching to OAuth (XOAUTH2 or Graph) drops the password rather than keeping it.
    oauth = data.get("auth_profile") or data.get("protocol") == Protocol.GRAPH
    if not oauth:
        _keep(data, "password", old.password)
    dkim = data.get("dkim")
    if isinstance(dkim, dict) and old.dkim is not None:
        dkim = dict(dkim)
        _keep(dkim, "private_key", old.dkim.private_key)
        data["dkim"] = dkim
    inbound = data.get("inbound")
    if isinstance(inbound, dict) and old.inbound is not None:
        inbound = dict(inbound)
        # Likewise: an inbound side switched to OAuth drops its password.
        if not inbound.get("auth_profile") and inbound.get("protocol") != "graph":
            _keep(inbound, "password", old.inbound.password)
        data["inbound"] = inbound
    return data


def secret_data(
    body: dict[str, Any], old: BaseModel | None, keys: tuple[str, ...]
) -> dict[str, Any]:
    """``body`` with the stored values of the secret ``keys`` it omits."""
    data = dict(body)
    if old is not None:
        for key in keys:
            _keep(data, key, getattr(old, key))
    return data
