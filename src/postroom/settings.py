"""Settings: command-line flags first, then ``POSTROOM_*`` environment variables, then defaults.

Nothing reads the environment at import time; entry points build a :class:`Settings`
and pass it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from postroom.text import check_tree

DEFAULT_DATABASE_URL = "sqlite:///./postroom.db"


class Settings(BaseSettings):
    """Runtime settings of a Postroom process."""

    model_config = SettingsConfigDict(env_prefix="POSTROOM_", extra="forbid", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    secret_key: SecretStr | None = Field(
        None, description="Key that encrypts secrets at rest (any string of 16+ characters)."
    )
    key_file: Path | None = Field(
        None, description="Where the generated key is kept when no secret_key is set."
    )
    auto_migrate: bool = Field(True, description="Upgrade the database schema on open.")
    log_level: str = "INFO"

    # Sender agent
    batch_size: int = Field(200, ge=1, le=10_000)
    poll_interval: float = Field(1.0, gt=0, le=60)
    lease_seconds: float = Field(60.0, ge=1, le=3600)
    heartbeat_interval: float = Field(5.0, gt=0, le=300)
    max_attempts: int = Field(8, ge=1, le=100)
    max_age_seconds: float = Field(2 * 24 * 3600.0, gt=0)
    backoff_base: float = Field(30.0, ge=0)
    backoff_max: float = Field(3600.0, ge=0)
    connections_per_account: int = Field(4, ge=1, le=64)
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Agent processes `postroom agent run` starts under one supervisor "
        "(unset: one per core); `postroom serve` runs its agent in-process unless given "
        "--workers.",
    )
    wakeup: bool = Field(
        True,
        description="Wake idle agents as soon as emails are committed (PostgreSQL "
        "LISTEN/NOTIFY, an in-process signal); polling every poll_interval stays the "
        "fallback.",
    )
    compose_processes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Processes that render and build a large send_many batch (unset: one "
        "per core; 1 renders in the calling process).",
    )
    compose_parallel_from: int = Field(
        500,
        ge=1,
        le=10_000,
        description="Emails in one send_many call from which they are rendered in "
        "compose_processes processes.",
    )
    smtp_timeout: float = Field(30.0, gt=0, le=600)
    http_timeout: float = Field(
        30.0, gt=0, le=600, description="Timeout of token and Microsoft Graph requests."
    )
    allowed_endpoint_hosts: str = Field(
        "",
        description="Comma-separated hosts, besides Microsoft's, that may receive client "
        "secrets, tokens and emails (token endpoints, Graph URLs).",
    )

    # Inbound mail (two-way correspondence)
    inbound: bool = Field(
        True,
        description="Run a listener for each account with inbound settings in every agent "
        "(--no-inbound turns it off).",
    )
    inbound_batch: int = Field(
        50, ge=1, le=1000, description="Messages fetched and ingested per round, per mailbox."
    )
    auto_reply_limit: int = Field(
        5,
        ge=0,
        le=10_000,
        description="Emails that steps send in answer to received mail, per address and "
        "hour, before further ones are held (loop protection).",
    )

    # After "sent": bounces, suppression, webhooks
    suppression_scope: Literal["account", "everywhere"] = Field(
        "account",
        description="Whether a hard bounce or complaint suppresses the address for the "
        "account that sent the email, or for every account.",
    )
    soft_bounce_limit: int = Field(
        3,
        ge=1,
        le=1000,
        description="Soft bounces of one address within soft_bounce_days that suppress it.",
    )
    soft_bounce_days: float = Field(
        7.0, gt=0, le=365, description="The window, in days, in which soft bounces count."
    )
    webhooks: bool = Field(
        True,
        description="Deliver webhook events from every agent (--no-webhooks turns it off).",
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=120, description="Time limit of one webhook request, in seconds."
    )
    webhook_concurrency: int = Field(
        4, ge=1, le=64, description="Webhook requests one agent has in flight at once."
    )
    webhook_backoff_base: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Wait before the first retry of a webhook delivery, in seconds; each "
        "later wait doubles, up to webhook_backoff_max.",
    )
    webhook_backoff_max: float = Field(
        3600.0, gt=0, le=86_400, description="Longest wait between webhook retries, in seconds."
    )
    webhook_retry_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="How long a webhook delivery is retried before it ends failed.",
    )

    # The service (`postroom serve`)
    host: str = Field("127.0.0.1", description="Address the REST API and Admin Studio bind to.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the REST API and Admin Studio.")
    max_request_bytes: int = Field(
        26 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API and Admin Studio accept (bytes); larger "
        "ones get 413 before they are read. A little above the 25 MB attachment limit.",
    )
    auth_window_seconds: float = Field(
        900.0,
        gt=0,
        le=86_400,
        description="How long failed Studio logins and API-token failures are counted; "
        "a refused client may try again when its window ends.",
    )
    auth_address_failures: int = Field(
        10,
        ge=2,
        le=10_000,
        description="Failures from one client address in a window before it is refused "
        "(429); past half of it each attempt is delayed more.",
    )
    auth_user_failures: int = Field(
        30,
        ge=2,
        le=10_000,
        description="Failures against one Studio user or API token, from any address, in "
        "a window before it is refused (looser than per address, so strangers cannot "
        "easily lock a user out).",
    )

    @field_validator("*")
    @classmethod
    def _valid_text(cls, value: Any, info: ValidationInfo) -> Any:
        # The command line checks its flags first (naming them), so text that gets here
        # unchecked came from the environment, where os.environ hands bytes that are not
        # UTF-8 over as lone surrogates. Paths are left alone, as flags' paths are.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str):
            check_tree(text, field=f"POSTROOM_{str(info.field_name).upper()}")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        try:
            _ = make_url(value).port  # a port that is not a number fails here, not deep inside
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver Postroom ships with.
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @property
    def endpoint_hosts(self) -> frozenset[str]:
        """``allowed_endpoint_hosts`` as a set of lower-case host names."""
        return frozenset(
            h.strip().lower() for h in self.allowed_endpoint_hosts.split(",") if h.strip()
        )

    @classmethod
    def from_flags(cls, **flags: Any) -> Settings:
        """Build settings where explicitly given flags win over the environment."""
        return cls(**{k: v for k, v in flags.items() if v is not None})

    def resolved_key_file(self) -> Path:
        """The key file path: as set, else ``postroom.key`` beside a SQLite database."""
        if self.key_file is not None:
            return self.key_file
        db_path = sqlite_path(self.database_url)
        base = db_path.parent if db_path is not None else Path.cwd()
        return base / "postroom.key"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, or ``None`` for other databases and memory."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])
