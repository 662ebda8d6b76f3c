"""Token endpoint errors in words an administrator can act on (pure, table-driven).

Microsoft Entra ID answers with an OAuth 2.0 error (RFC 6749 §5.2) whose description
starts with an ``AADSTSnnnn`` code; the code says far more than the error does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_AADSTS = re.compile(r"\bAADSTS(\d+)\b")

AADSTS: dict[int, str] = {
    7000215: "the client secret is wrong: copy the secret's Value (not its Secret ID) from "
    "the app registration's Certificates & secrets into the profile's client_secret",
    7000222: "the client secret has expired: create a new one under Certificates & secrets "
    "and update the profile",
    7000218: "the request carried no client secret: set client_secret in the profile",
    700016: "no application with this client_id exists in the tenant: check client_id "
    "(Application (client) ID) and tenant_id, and that the app is registered in this tenant",
    90002: "the tenant does not exist: check tenant_id (the Directory (tenant) ID of the app "
    "registration)",
    900023: "tenant_id is not a valid tenant GUID or domain name",
    70011: "the scope is not valid: client credentials need the resource followed by "
    "/.default, e.g. https://graph.microsoft.com/.default",
    1002012: "the scope is not valid: client credentials need the resource followed by "
    "/.default, e.g. https://graph.microsoft.com/.default",
    500011: "the scope names a resource this tenant does not know: check the scope",
    70003: "this grant type is not supported: use client_credentials",
    7000112: "the application is disabled in this tenant: an administrator must enable it",
    700027: "the client assertion is not valid: check the credential",
}

_BY_ERROR: dict[str, str] = {
    "invalid_client": "the client credentials were refused: check client_id and client_secret",
    "unauthorized_client": "this client is not allowed to get tokens here: check client_id "
    "and tenant_id",
    "invalid_scope": "the scope is not valid: client credentials need the resource followed "
    "by /.default",
    "invalid_request": "the token request was refused: check tenant_id and token_endpoint",
    "unsupported_grant_type": "this grant type is not supported: use client_credentials",
    "invalid_grant": "the grant was refused: check the profile",
}

# Errors that a later attempt may not get: the service itself is unwell.
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


@dataclass(frozen=True, slots=True)
class TokenProblem:
    """What a token endpoint's error means."""

    error: str
    code: int | None
    explanation: str
    transient: bool

    def describe(self) -> str:
        head = f"AADSTS{self.code} ({self.error})" if self.code else self.error
        return f"token request refused: {head}: {self.explanation}"


def explain_token_error(error: str, description: str | None) -> TokenProblem:
    """Classify an OAuth error and its description (which may carry an AADSTS code)."""
    match = _AADSTS.search(description or "")
    code = int(match.group(1)) if match else None
    explanation = (
        AADSTS.get(code or 0)
        or _BY_ERROR.get(error)
        or (_first_line(description) if description else f"the token endpoint said {error}")
    )
    return TokenProblem(error, code, explanation, error in TRANSIENT_ERRORS)


def _first_line(text: str) -> str:
    # Entra's descriptions continue with trace and correlation ids on later lines.
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _AADSTS.sub("", line).lstrip(": ").strip() or text.strip()[:200]
