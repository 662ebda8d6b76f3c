"""Records that hold secrets as they are written (write-only secrets) and shown.

The input models describe the API's request bodies; the records are then validated by
the same models ``postroom apply`` uses. The views are what the API answers and what
``--json`` prints: a secret only ever appears as a ``*_set`` flag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from postroom.accounts import EmailAccount, Protocol, Provider, Security
from postroom.accounts.encryption import Encryption
from postroom.accounts.models import GRAPH_URL, Signing, UnknownOutcome
from postroom.auth import AuthProfile
from postroom.auth.models import MICROSOFT_AUTHORITY, GrantType
from postroom.errors import ConfigurationError
from postroom.inbound.settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AfterIngest,
    InboundProtocol,
    InboundSecurity,
    InboundSettings,
)
from postroom.keystores.inspection import describe
from postroom.keystores.loading import KeystoreKind
from postroom.keystores.models import Keystore

_NAME = Field(min_length=1, max_length=255, examples=["Default"])
_KEEP = "Write-only. Omit it to keep the stored one; null removes it."


class DkimIn(BaseModel):
    """DKIM settings; the private key is write-only."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1, max_length=253, examples=["example.com"])
    selector: str = Field(min_length=1, max_length=63, examples=["postroom"])
    private_key: SecretStr | None = Field(
        None, description="Unencrypted RSA PEM key. Write-only; omit it to keep the stored one."
    )


class InboundIn(BaseModel):
    """An account's inbound settings as written; the password is write-only."""

    model_config = ConfigDict(extra="forbid")

    protocol: InboundProtocol = InboundProtocol.IMAP
    host: str | None = Field(None, max_length=255, examples=["imap.example.com"])
    port: int | None = Field(None, ge=1, le=65535, description="Default: 993 (tls), 143")
    security: InboundSecurity = InboundSecurity.TLS
    user_id: str | None = Field(None, max_length=320)
    password: SecretStr | None = Field(None, description=_KEEP)
    auth_profile: str | None = Field(None, max_length=255)
    truststore: str | None = Field(None, description="PEM bundle of trusted CA certificates")
    tls_min_version: str = Field("1.2", pattern=r"^(TLSv)?1\.[23]$")
    allow_insecure_auth: bool = False
    folder: str = Field("INBOX", max_length=255)
    after: AfterIngest = AfterIngest.SEEN
    move_to: str | None = Field(None, max_length=255)
    poll_seconds: float = Field(30.0, ge=1, le=3600)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=1024**3)


class InboundView(BaseModel):
    """Inbound settings as shown: the password only as a flag."""

    protocol: InboundProtocol
    host: str | None
    port: int | None
    security: InboundSecurity
    user_id: str | None
    password_set: bool
    auth_profile: str | None
    truststore: str | None
    tls_min_version: str
    allow_insecure_auth: bool
    folder: str
    after: AfterIngest
    move_to: str | None
    poll_seconds: float
    max_message_bytes: int

    @classmethod
    def of(cls, inbound: InboundSettings) -> InboundView:
        data = inbound.model_dump(exclude={"password"})
        return cls(**data, password_set=inbound.password is not None)


class AccountIn(BaseModel):
    """An email account as written through the API."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Default",
                    "address": "noreply@example.com",
                    "host": "smtp.example.com",
                    "port": 587,
                    "security": "starttls",
                    "password": "app-password",
                }
            ]
        },
    )

    name: str = _NAME
    provider: Provider = Provider.CUSTOM
    protocol: Protocol = Protocol.SMTP
    address: str = Field(max_length=320, examples=["noreply@example.com"])
    display_name: str = Field("", max_length=255)
    user_id: str | None = Field(None, max_length=320)
    password: SecretStr | None = Field(None, description=_KEEP)
    reply_to: str | None = Field(None, max_length=320)
    host: str | None = Field(None, max_length=255, examples=["smtp.example.com"])
    port: int | None = Field(None, ge=1, le=65535, description="Default: from security")
    security: Security | None = None
    tls_min_version: str = Field("1.2", pattern=r"^(TLSv)?1\.[23]$")
    truststore: str | None = Field(None, description="PEM bundle of trusted CA certificates")
    allow_insecure_auth: bool = False
    advanced: dict[str, str] = Field(default_factory=dict)
    auth_profile: str | None = Field(None, max_length=255)
    user_principal_name: str | None = Field(None, max_length=320)
    graph_url: str = Field(GRAPH_URL, max_length=255)
    save_to_sent_items: bool = True
    on_unknown_outcome: UnknownOutcome = UnknownOutcome.RETRY
    signing: Signing | None = None
    dkim: DkimIn | None = None
    encryption: Encryption | None = None
    inbound: InboundIn | None = None
    reply_to_plus_addressing: bool = False
    bounce_address: str | None = Field(
        None,
        max_length=320,
        description="Envelope sender for bounces: each email is sent from "
        "bounces+<token>@..., so that its bounce names it (SMTP accounts)",
        examples=["bounces@example.com"],
    )


class DkimView(BaseModel):
    """DKIM settings as shown: never the key."""

    domain: str
    selector: str
    private_key_set: bool


class AccountView(BaseModel):
    """An email account as shown: secrets only as ``*_set`` flags."""

    name: str
    provider: Provider
    protocol: Protocol
    address: str
    display_name: str
    user_id: str | None
    password_set: bool
    reply_to: str | None
    host: str | None
    port: int
    security: Security
    tls_min_version: str
    truststore: str | None
    allow_insecure_auth: bool
    advanced: dict[str, str]
    auth_profile: str | None
    user_principal_name: str | None
    graph_url: str
    save_to_sent_items: bool
    on_unknown_outcome: UnknownOutcome
    signing: Signing | None
    dkim: DkimView | None
    encryption: Encryption | None
    inbound: InboundView | None = None
    reply_to_plus_addressing: bool = False
    bounce_address: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, account: EmailAccount, warnings: list[str] | None = None) -> AccountView:
        fields: dict[str, Any] = {
            name: getattr(account, name)
            for name in cls.model_fields
            if name not in ("password_set", "dkim", "warnings", "inbound")
        }
        dkim = account.dkim
        return cls(
            **fields,
            password_set=account.password is not None,
            dkim=None
            if dkim is None
            else DkimView(domain=dkim.domain, selector=dkim.selector, private_key_set=True),
            inbound=None if account.inbound is None else InboundView.of(account.inbound),
            warnings=[*account.warnings, *(warnings or [])],
        )


class AuthProfileIn(BaseModel):
    """An OAuth 2.0 client-credentials profile as written through the API."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "entra",
                    "client_id": "00000000-0000-0000-0000-000000000000",
                    "client_secret": "secret",
                    "tenant_id": "contoso.onmicrosoft.com",
                }
            ]
        },
    )

    name: str = _NAME
    grant_type: GrantType = GrantType.CLIENT_CREDENTIALS
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = Field(
        None, description="Write-only; required on creation, omit it to keep the stored one."
    )
    scope: str = Field("https://graph.microsoft.com/.default", max_length=1000)
    tenant_id: str | None = Field(None, max_length=255)
    authority: str = Field(MICROSOFT_AUTHORITY, max_length=255)
    token_endpoint: str = Field("", max_length=2000)


class AuthProfileView(BaseModel):
    """An authentication profile as shown: the client secret only as a flag."""

    name: str
    grant_type: GrantType
    client_id: str
    client_secret_set: bool
    scope: str
    tenant_id: str | None
    authority: str
    token_endpoint: str

    @classmethod
    def of(cls, profile: AuthProfile) -> AuthProfileView:
        data = profile.model_dump(exclude={"client_secret"})
        return cls(**data, client_secret_set=True)


class KeystoreIn(BaseModel):
    """A signing keystore as written through the API; its content and password are write-only."""

    model_config = ConfigDict(extra="forbid")

    name: str = _NAME
    kind: KeystoreKind | None = Field(None, description="Detected from the content when omitted")
    content: SecretStr | None = Field(
        None,
        description="The .p12/.pfx, .jks or PEM file, base64. Write-only; required on "
        "creation, omit it to keep the stored one.",
    )
    password: SecretStr | None = Field(None, description=_KEEP)
    alias: str | None = Field(None, max_length=255)


class CertificateView(BaseModel):
    """The signing certificate of a keystore entry."""

    alias: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_size: int
    emails: list[str]
    chain_length: int


class KeystoreView(BaseModel):
    """A keystore as shown: its certificate's details, never its key or password."""

    name: str
    kind: KeystoreKind | None
    alias: str | None
    content_set: bool
    password_set: bool
    certificate: CertificateView | None
    warnings: list[str]
    error: str | None = Field(None, description="Why the entry cannot be opened, if it cannot")

    @classmethod
    def of(cls, keystore: Keystore) -> KeystoreView:
        certificate = None
        warnings: list[str] = []
        error = None
        try:
            info = describe(keystore.entry())
        except (ConfigurationError, ValueError) as exc:
            error = str(exc)
        else:
            certificate = CertificateView(
                alias=info.alias,
                subject=info.subject,
                issuer=info.issuer,
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                key_type=info.key_type,
                key_size=info.key_size,
                emails=list(info.emails),
                chain_length=info.chain_length,
            )
            warnings = list(info.warnings)
        return cls(
            name=keystore.name,
            kind=keystore.kind,
            alias=keystore.alias,
            content_set=True,
            password_set=keystore.password is not None,
            certificate=certificate,
            warnings=warnings,
            error=error,
        )
