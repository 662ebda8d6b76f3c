"""The email account record."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from postroom.accounts.advanced import parse_advanced
from postroom.accounts.encryption import Encryption
from postroom.accounts.limits import Limits, effective_limits
from postroom.accounts.presets import PRESETS, Provider, Security, preset_warnings
from postroom.auth.models import check_base_url
from postroom.bounces.verp import TOKEN_LENGTH
from postroom.inbound.settings import InboundProtocol, InboundSettings
from postroom.text import check_line
from postroom.validation import (
    check_address,
    check_display_name,
    check_record_name,
    check_tls_min_version,
    check_truststore,
)

DEFAULT_ACCOUNT = "Default"
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*"
)
GRAPH_URL = "https://graph.microsoft.com"
# A bounce address's local part: RFC 5322 dot-atom text without "+", which starts the
# VERP token; so it needs no quoting, on its own or with the token.
_BOUNCE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*")
_VERP_SUFFIX = 1 + TOKEN_LENGTH  # "+" and the token


def check_bounce_address(value: str) -> str:
    """A bounce address that takes ``+<token>`` in its local part; ValueError if not."""
    address = check_address(value, what="bounce_address")
    local = address.rpartition("@")[0]
    if "+" in local:
        raise ValueError(
            f"bounce_address {address!r}: its local part must not contain '+', which "
            "Postroom adds with each email's token (bounces+<token>@...)"
        )
    if not _BOUNCE_LOCAL.fullmatch(local):
        raise ValueError(
            f"bounce_address {address!r}: use a plain local part (letters, digits, '.', '-', '_')"
        )
    if len(local) + _VERP_SUFFIX > 64:
        raise ValueError(
            f"bounce_address {address!r}: its local part may have at most "
            f"{64 - _VERP_SUFFIX} characters, so that it still fits with '+<token>'"
        )
    return address


class Protocol(StrEnum):
    SMTP = "smtp"
    GRAPH = "graph"  # Microsoft Graph sendMail with an authentication profile


class UnknownOutcome(StrEnum):
    """What to do when a send request went out and no answer came back."""

    RETRY = "retry"  # send again: a duplicate is possible, a loss is not
    HOLD = "hold"  # wait for a person to check the mailbox's Sent Items


class Signing(BaseModel):
    """S/MIME signing: the keystore record (and entry) whose key signs the account's mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keystore: str
    alias: str | None = None

    @field_validator("keystore")
    @classmethod
    def _keystore(cls, v: str) -> str:
        return check_record_name(v, what="signing keystore")


class Dkim(BaseModel):
    """DKIM for the sending domain: the selector's DNS record holds the public key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str
    selector: str
    private_key: SecretStr

    @field_validator("domain", "selector")
    @classmethod
    def _label(cls, v: str) -> str:
        if not _DNS_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a DNS name (letters, digits, '-', '.')")
        return v.lower()

    @field_validator("private_key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        try:
            key = serialization.load_pem_private_key(v.get_secret_value().encode(), None)
        except (ValueError, TypeError):
            raise ValueError("dkim private_key must be an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 1024:
            raise ValueError("dkim private_key must be an RSA key of 1024 bits or more")
        return v


class EmailAccount(BaseModel):
    """Sender settings: identity, connection and security of one outbound account."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    name: str
    provider: Provider = Provider.CUSTOM
    protocol: Protocol = Protocol.SMTP
    address: str
    display_name: str = ""
    user_id: str | None = None
    password: SecretStr | None = None
    reply_to: str | None = None
    host: str | None = None
    port: int = Field(587, ge=1, le=65535)
    security: Security = Security.STARTTLS
    tls_min_version: str = "1.2"
    truststore: str | None = Field(None, description="PEM bundle of trusted CA certificates")
    allow_insecure_auth: bool = Field(
        False, description="Allow sending credentials without TLS (never do this on a network)."
    )
    advanced: dict[str, str] = Field(default_factory=dict)
    auth_profile: str | None = Field(
        None, description="Authentication profile for Graph, or for SMTP with XOAUTH2"
    )
    user_principal_name: str | None = Field(
        None, description="The Graph mailbox that sends (default: the address)"
    )
    graph_url: str = GRAPH_URL
    save_to_sent_items: bool = True
    on_unknown_outcome: UnknownOutcome = UnknownOutcome.RETRY
    signing: Signing | None = None
    dkim: Dkim | None = None
    encryption: Encryption | None = None
    limits: Limits | None = None
    inbound: InboundSettings | None = Field(
        None, description="The mailbox replies and new mail are read from (IMAP or Graph)"
    )
    reply_to_plus_addressing: bool = Field(
        False,
        description="Reply-To carries the case id as a plus-address (mortgages+M-12@...), "
        "so that replies find their case",
    )
    bounce_address: str | None = Field(
        None,
        description="Envelope sender for bounces (VERP): each email is sent from "
        "bounces+<token>@..., so that its bounce names it",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_record_name(v, what="account name")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_address(v, what="account address")

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, v: str | None) -> str | None:
        # The IMAP login falls back to it, and IMAP's LOGIN cannot quote a line break:
        # a CR or LF would end the command and send the rest as commands of its own.
        return check_line(v, field="user_id") if v else v

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, v: str | None) -> str | None:
        return None if not v else check_address(v, what="reply-to address")

    @field_validator("bounce_address")
    @classmethod
    def _bounce(cls, v: str | None) -> str | None:
        return None if not v else check_bounce_address(v)

    @field_validator("display_name")
    @classmethod
    def _display(cls, v: str) -> str:
        return check_display_name(v)

    @field_validator("auth_profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return None if not v else check_record_name(v, what="auth_profile")

    @field_validator("user_principal_name")
    @classmethod
    def _upn(cls, v: str | None) -> str | None:
        if not v:
            return None
        # A UPN (user@domain) or the user's object id; it goes into a URL path.
        if any(c in v for c in "/?#%\\ ") or check_display_name(v) != v:
            raise ValueError(f"user_principal_name {v!r} must be a user@domain name or an id")
        return v

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, v: str) -> str:
        return check_base_url(v, what="graph_url")

    @field_validator("tls_min_version")
    @classmethod
    def _tls(cls, v: str) -> str:
        return check_tls_min_version(v, what="tls_min_version")

    @field_validator("truststore")
    @classmethod
    def _truststore(cls, v: str | None) -> str | None:
        return check_truststore(v, what="truststore")

    @field_validator("advanced", mode="before")
    @classmethod
    def _advanced(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, dict):
            v = {
                str(k): str(val).lower() if isinstance(val, bool) else str(val)
                for k, val in v.items()
            }
            parse_advanced(v)
        return v

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        # Choosing a provider fills host, port and security; each stays editable.
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if v is not None}
        try:
            provider = Provider(data.get("provider", Provider.CUSTOM))
        except ValueError:
            return data  # the field validator reports the unknown provider
        preset = PRESETS.get(provider)
        if preset is not None:
            data.setdefault("host", preset.host)
            data.setdefault("port", preset.port)
            data.setdefault("security", preset.security)
        if "port" not in data:
            security = data.get("security", Security.STARTTLS)
            data["port"] = {"tls": 465, "starttls": 587}.get(str(security), 25)
        return data

    @model_validator(mode="after")
    def _inbound(self) -> EmailAccount:
        inbound = self.inbound
        if (
            inbound is not None
            and inbound.protocol is InboundProtocol.GRAPH
            and not (inbound.auth_profile or self.auth_profile)
        ):
            raise ValueError(
                "Graph inbound needs an auth_profile, on the inbound section or the account"
            )
        return self

    @model_validator(mode="after")
    def _complete(self) -> EmailAccount:
        if self.protocol is Protocol.GRAPH:
            if not self.auth_profile:
                raise ValueError("a Graph account needs auth_profile (OAuth 2.0 client settings)")
            if self.password is not None:
                raise ValueError(
                    "a Graph account authenticates with its auth_profile: remove the password"
                )
            if self.bounce_address:
                # Graph sets the envelope sender itself; its bounces are matched by Message-ID.
                raise ValueError(
                    "bounce_address is for SMTP accounts: Graph does not let Postroom choose "
                    "the envelope sender (its bounces are matched by Message-ID)"
                )
            return self
        if not self.host:
            raise ValueError("host is required for an SMTP account (or choose a provider)")
        if self.password is not None and self.auth_profile:
            raise ValueError(
                "give either a password or an auth_profile (XOAUTH2), not both: "
                "the account authenticates one way"
            )
        if (
            (self.password is not None or self.auth_profile)
            and self.security is Security.NONE
            and not self.allow_insecure_auth
        ):
            raise ValueError(
                "this account would send its credentials without encryption; use security "
                "'starttls' or 'tls', or set allow_insecure_auth: true for a local test server"
            )
        return self

    @property
    def mailbox(self) -> str:
        """The Graph mailbox that sends: ``user_principal_name``, else the address."""
        return self.user_principal_name or self.address

    @property
    def graph_mailbox_url(self) -> str:
        """The Graph URL of :attr:`mailbox`, which its messages and folders are under."""
        return f"{self.graph_url}/v1.0/users/{quote(self.mailbox, safe='@')}"

    @property
    def inbound_login(self) -> str:
        """The IMAP login: the inbound ``user_id``, else the account's ``user_id`` or address."""
        own = self.inbound.user_id if self.inbound is not None else None
        return own or self.user_id or self.address

    @property
    def inbound_profile(self) -> str | None:
        """The auth profile the inbound side uses: its own, else the account's for Graph."""
        if self.inbound is None:
            return None
        if self.inbound.auth_profile:
            return self.inbound.auth_profile
        return self.auth_profile if self.inbound.protocol is InboundProtocol.GRAPH else None

    @property
    def effective_limits(self) -> Limits:
        """``limits``, with what the provider documents for the ones not given."""
        return effective_limits(
            provider=self.provider, graph=self.protocol is Protocol.GRAPH, given=self.limits
        )

    @property
    def login(self) -> str:
        """The user name for SMTP AUTH: ``user_id``, else the address."""
        return self.user_id or self.address

    @property
    def warnings(self) -> list[str]:
        """Settings that depart from the chosen provider's preset."""
        if self.protocol is Protocol.GRAPH:
            return []  # presets describe SMTP servers
        return preset_warnings(
            self.provider, host=self.host, port=self.port, security=self.security
        )
