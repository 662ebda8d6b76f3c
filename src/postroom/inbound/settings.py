"""The inbound side of an email account: where its mailbox is and how it is read."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from postroom.text import check_line, check_unicode
from postroom.validation import check_record_name, check_tls_min_version, check_truststore

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
# IMAP servers end an IDLE after 30 minutes at the latest (RFC 2177); the poll bound
# stays well inside it and inside what an operator would wait for a polled mailbox.
MAX_POLL_SECONDS = 3600


class InboundProtocol(StrEnum):
    """How the mailbox is read."""

    IMAP = "imap"
    GRAPH = "graph"  # Microsoft Graph delta query on the folder, with an auth profile


class InboundSecurity(StrEnum):
    """How an IMAP connection is protected."""

    TLS = "tls"  # implicit TLS from the first byte (port 993)
    STARTTLS = "starttls"  # plain on 143, then STARTTLS before anything else
    NONE = "none"  # only for a local test server, with allow_insecure_auth


class AfterIngest(StrEnum):
    """What is done on the server to a message once it is safely in the database."""

    SEEN = "seen"  # flag it \\Seen (Graph: isRead)
    MOVE = "move"  # move it to move_to
    DELETE = "delete"  # delete it (IMAP: \\Deleted and expunge)


def _folder(value: str, *, what: str) -> str:
    value = check_line(value, field=what).strip()
    if not value or len(value) > 255:
        raise ValueError("must be 1-255 characters")
    return value


# Validation messages name no field: the error's location does ("inbound.host: is
# required for IMAP"), as it does for the account's other nested sections.


class InboundSettings(BaseModel):
    """The mailbox an account reads replies and new mail from (IMAP or Graph)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: InboundProtocol = InboundProtocol.IMAP
    host: str | None = Field(
        None, max_length=255, validate_default=True, description="IMAP server (not for Graph)"
    )
    port: int | None = Field(None, ge=1, le=65535, description="Default: 993 (tls), 143")
    security: InboundSecurity = InboundSecurity.TLS
    user_id: str | None = Field(
        None, max_length=320, description="IMAP login (default: the account's user_id, address)"
    )
    password: SecretStr | None = Field(
        None, validate_default=True, description="IMAP password (secret)"
    )
    auth_profile: str | None = Field(
        None,
        description="OAuth 2.0 profile: IMAP XOAUTH2, or Graph (default for Graph: the "
        "account's auth_profile)",
    )
    truststore: str | None = Field(None, description="PEM bundle of trusted CA certificates")
    tls_min_version: str = "1.2"
    allow_insecure_auth: bool = Field(
        False, description="Allow a password without TLS (never do this on a network)."
    )
    folder: str = "INBOX"
    after: AfterIngest = AfterIngest.SEEN
    move_to: str | None = Field(None, validate_default=True)
    poll_seconds: float = Field(
        30.0, ge=1, le=MAX_POLL_SECONDS, description="Between polls when IDLE is not offered"
    )
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Larger messages are recorded as too large and left on the server",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = check_unicode(v, field="host").strip() if v else None
        if not v:
            if info.data.get("protocol") is InboundProtocol.IMAP:
                raise ValueError("is required for IMAP")
            return None
        if any(c.isspace() or c in "/?#@" for c in v):
            raise ValueError(f"{v!r} must be a host name or an address")
        return v

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, v: str | None) -> str | None:
        # The IMAP LOGIN command quotes the name but cannot quote a line break: a CR or
        # LF in it would end the command and let the rest reach the server as commands.
        return check_line(v, field="user_id") if v else None

    @field_validator("password")
    @classmethod
    def _password(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is None:
            return None
        # Same as user_id; check_line names the field and never quotes the value.
        check_line(v.get_secret_value(), field="password")
        if info.data.get("protocol") is InboundProtocol.GRAPH:
            raise ValueError("Graph reads with an auth_profile: remove the password")
        return v

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        return _folder(v, what="folder")

    @field_validator("move_to")
    @classmethod
    def _move_to(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = _folder(v, what="move_to") if v else None
        after = info.data.get("after")
        if after is AfterIngest.MOVE:
            if not v:
                raise ValueError("is required for after: move (the folder to move to)")
            if v == info.data.get("folder"):
                raise ValueError("must be another folder than the one read")
        elif v and after is not None:
            raise ValueError("is only for after: move")
        return v

    @field_validator("auth_profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return None if not v else check_record_name(v, what="auth_profile")

    @field_validator("tls_min_version", mode="before")
    @classmethod
    def _tls(cls, v: Any) -> str:
        return check_tls_min_version(v)

    @field_validator("truststore")
    @classmethod
    def _truststore(cls, v: str | None) -> str | None:
        return check_truststore(v)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            data = {k: v for k, v in data.items() if k != "port"}
            if str(data.get("protocol", "imap")) == InboundProtocol.IMAP:
                tls = str(data.get("security", InboundSecurity.TLS)) == InboundSecurity.TLS
                data["port"] = 993 if tls else 143
        return data

    @model_validator(mode="after")
    def _complete(self) -> InboundSettings:
        if self.protocol is InboundProtocol.GRAPH:
            return self
        if self.password is not None and self.auth_profile:
            raise ValueError("give either a password or an auth_profile, not both")
        if self.password is None and not self.auth_profile:
            raise ValueError("IMAP needs a password or an auth_profile (XOAUTH2)")
        if self.security is InboundSecurity.NONE and not self.allow_insecure_auth:
            raise ValueError(
                "the credentials would be sent without encryption; use security 'tls' or "
                "'starttls', or set allow_insecure_auth: true for a local test server"
            )
        return self
