"""The authentication profile record: how an account obtains OAuth 2.0 access tokens."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from postroom.validation import check_record_name, single_line

_TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*")

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
OUTLOOK_SMTP_SCOPE = "https://outlook.office365.com/.default"


class GrantType(StrEnum):
    # Application permissions with a client secret: no user signs in, which is what a
    # background sender needs. Other grants need a person at a browser.
    CLIENT_CREDENTIALS = "client_credentials"


class AuthProfile(BaseModel):
    """OAuth 2.0 client settings that email accounts name to authenticate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    grant_type: GrantType = GrantType.CLIENT_CREDENTIALS
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr
    scope: str = GRAPH_SCOPE
    tenant_id: str | None = Field(
        None, description="Microsoft Entra tenant: fills token_endpoint when that is not given"
    )
    authority: str = Field(
        MICROSOFT_AUTHORITY, description="Sign-in host for tenant_id (national clouds differ)"
    )
    token_endpoint: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_record_name(v, what="authentication profile name")

    @field_validator("client_id", "scope")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if single_line(v) != v or not v:
            raise ValueError("must be one line without control characters or outer spaces")
        return v

    @field_validator("client_secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("client_secret is empty")
        return v

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, v: str | None) -> str | None:
        # A GUID or a domain such as contoso.onmicrosoft.com: it goes into a URL path.
        if v is not None and not _TENANT.fullmatch(v):
            raise ValueError(f"tenant_id {v!r} must be a tenant GUID or domain name")
        return v

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        # Client credentials take one resource's application permissions: resource/.default.
        if " " in v or not v.endswith("/.default"):
            raise ValueError(
                f"scope {v!r} must be one resource followed by /.default, "
                f"e.g. {GRAPH_SCOPE} or {OUTLOOK_SMTP_SCOPE}"
            )
        return v

    @field_validator("authority", "token_endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v) if v else v

    @model_validator(mode="before")
    @classmethod
    def _endpoint(cls, data: Any) -> Any:
        # tenant_id is a shortcut: Microsoft's token endpoint is derived from it.
        if not isinstance(data, dict):
            return data
        tenant = data.get("tenant_id")
        endpoint = data.get("token_endpoint")
        if not endpoint:
            if not tenant:
                raise ValueError("give token_endpoint, or tenant_id for Microsoft Entra ID")
            authority = str(data.get("authority") or MICROSOFT_AUTHORITY).rstrip("/")
            data = {**data, "token_endpoint": f"{authority}/{tenant}/oauth2/v2.0/token"}
        elif tenant and f"/{tenant}/" not in str(endpoint):
            raise ValueError(
                f"token_endpoint {endpoint} is not tenant_id {tenant}'s: give one of them"
            )
        return data

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that affects the token changes (the secret included)."""
        material = "\x00".join(
            (
                self.grant_type,
                self.client_id,
                self.client_secret.get_secret_value(),
                self.scope,
                self.token_endpoint,
            )
        )
        return hashlib.sha256(material.encode()).hexdigest()


def check_base_url(value: str, *, what: str = "URL") -> str:
    """:func:`check_url` without a path: ``https://host[:port]``."""
    url = check_url(value, what=what)
    if urlsplit(url).path:
        raise ValueError(f"{what} {value!r} must be scheme and host only, without a path")
    return url


def check_url(value: str, *, what: str = "URL") -> str:
    """An absolute http(s) URL without credentials, query or fragment; no trailing slash."""
    v = value.strip().rstrip("/")
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} {value!r} must be an https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{what} {value!r} must not contain credentials, a query or a fragment")
    if single_line(v) != v or " " in v:
        raise ValueError(f"{what} {value!r} contains spaces or control characters")
    del port  # parsed only to reject a malformed port
    return v
