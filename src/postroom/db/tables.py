"""The schema, as SQLAlchemy Core tables. Migrations in ``migrations/`` must match it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from postroom.db import metadata as _schema
from postroom.db import tables_correspondence as _correspondence
from postroom.db import tables_feedback as _feedback
from postroom.db.types import UTCDateTime

_HAS_EXPIRY = "expires_at IS NOT NULL"

metadata = _schema.metadata

# Kept in their own module, on the same metadata; named here like every other table.
delivery_reports = _feedback.delivery_reports
suppressions = _feedback.suppressions
webhook_endpoints = _feedback.webhook_endpoints
webhook_events = _feedback.webhook_events
webhook_deliveries = _feedback.webhook_deliveries
webhook_attempts = _feedback.webhook_attempts
correspondence_versions = _correspondence.correspondence_versions
correspondence_images = _correspondence.correspondence_images
reviews = _correspondence.reviews

accounts = Table(
    "accounts",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("address", String(320), nullable=False),
    Column("display_name", String(255), nullable=False, default=""),
    Column("user_id", String(320), nullable=True),
    Column("password", Text, nullable=True),  # encrypted, see security.secrets
    Column("reply_to", String(320), nullable=True),
    Column("host", String(255), nullable=True),
    Column("port", Integer, nullable=True),
    Column("security", String(16), nullable=False),
    Column("tls_min_version", String(8), nullable=False),
    Column("truststore", Text, nullable=True),
    Column("allow_insecure_auth", Boolean, nullable=False, default=False),
    Column("advanced", JSON, nullable=False),
    Column("auth_profile", String(255), nullable=True),
    Column("user_principal_name", String(320), nullable=True),
    Column("graph_url", String(255), nullable=False),
    Column("save_to_sent_items", Boolean, nullable=False),
    Column("on_unknown_outcome", String(8), nullable=False),
    Column("signing", JSON, nullable=True),  # {"keystore", "alias"}
    Column("dkim", JSON, nullable=True),  # {"domain", "selector"}
    Column("dkim_private_key", Text, nullable=True),  # encrypted, see security.secrets
    Column("encryption", JSON, nullable=True),  # {"certificates": [...], "without_certificate"}
    Column("limits", JSON, nullable=True),  # {"max_connections", "messages_per_minute"}
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The inbound side (see inbound.settings), its password apart and encrypted.
    Column("inbound", JSON, nullable=True),
    Column("inbound_password", Text, nullable=True),  # encrypted, see security.secrets
    Column("reply_to_plus_addressing", Boolean, nullable=False, default=False, server_default="0"),
    Column("bounce_address", String(320), nullable=True),  # VERP: bounces+<token>@...
)

auth_profiles = Table(
    "auth_profiles",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("grant_type", String(32), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("client_secret", Text, nullable=False),  # encrypted, see security.secrets
    Column("scope", Text, nullable=False),
    Column("tenant_id", String(255), nullable=True),
    Column("authority", String(255), nullable=False),
    Column("token_endpoint", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

keystores = Table(
    "keystores",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("content", Text, nullable=False),  # the file, base64, encrypted
    Column("password", Text, nullable=True),  # encrypted
    Column("alias", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# An account whose credentials were refused: its emails wait (status 'held') until
# the credentials work again. Runtime state, kept apart from the account record.
account_holds = Table(
    "account_holds",
    metadata,
    Column("account", String(255), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("check_at", UTCDateTime, nullable=False),
    Column("failures", Integer, nullable=False),
)

operators = Table(
    "operators",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("email", String(320), nullable=True),
    Column("reports_to", String(128), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("language", String(35), nullable=True),  # e.g. "de", "pt-BR"
)

correspondence = Table(
    "correspondence",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # The language of subject/html/text; translations hold the others by language tag.
    Column("language", String(35), nullable=False, default="en", server_default="en"),
    Column("translations", JSON, nullable=True),  # {"de": {"subject", "html", "text"}}
    # {content_id: {"filename", "content_type", "sha256", "size"}}; bytes in
    # correspondence_images, shared by every version that uses them.
    Column("images", JSON, nullable=True),
    # The number of the version this record is (see correspondence_versions).
    Column("version", Integer, nullable=False, default=1, server_default="1"),
    Column("updated_by", String(255), nullable=True),
)

case_types = Table(
    "case_types",
    metadata,
    Column("class_name", String(255), primary_key=True),
    Column("class_group", String(255), nullable=False),
    Column("label", String(255), nullable=False),
    Column("id_prefix", String(32), nullable=False),
    Column("definition", JSON, nullable=False),  # parties and steps, validated on write
    Column("updated_at", UTCDateTime, nullable=False),
)

id_counters = Table(
    "id_counters",
    metadata,
    Column("prefix", String(32), primary_key=True),
    Column("last", Integer, nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("case_type", String(255), nullable=False, index=True),
    Column("status", String(64), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

case_parties = Table(
    "case_parties",
    metadata,
    Column("case_id", String(64), ForeignKey("cases.id"), primary_key=True),
    Column("role", String(128), primary_key=True),
    Column("operator_id", String(128), nullable=True),
    Column("name", String(255), nullable=False, default=""),
    Column("address", String(320), nullable=False),
    Column("language", String(35), nullable=True),  # the language emails to it are in
)

case_attachments = Table(
    "case_attachments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(64), ForeignKey("cases.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("outbox_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # Names are how attachments are fetched; two uploads racing on PostgreSQL would both
    # pass a check made in code.
    Index("ux_case_attachments_name", "case_id", "name", unique=True),
)

case_history = Table(
    "case_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(64), ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("case_id", String(64), nullable=True, index=True),
    Column("account", String(255), nullable=True),
    Column("subject", Text, nullable=False, default=""),
    Column("mail_from", String(320), nullable=False, default=""),
    # [{"address", "state", "code", "text"}]: per-recipient delivery state.
    Column("recipients", JSON, nullable=False),
    Column("message", LargeBinary, nullable=True),
    Column("status", String(16), nullable=False),
    # Why a 'held' row waits: 'account' (credentials refused) or 'outcome' (unknown).
    Column("hold", String(16), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_enhanced", String(16), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    # 0 high, 1 normal, 2 low: claims take the lowest first (see outbox.status.Priority).
    Column("priority", SmallInteger, nullable=False, default=1, server_default="1"),
    Column("expires_at", UTCDateTime, nullable=True),
    # Names the row in its envelope sender (VERP) and DSN ENVID: random, not guessable.
    Column("bounce_token", String(32), nullable=True),
    # What the email was rendered from, for proof years later: the correspondence, the
    # number of its version and the language chosen (None for ad-hoc text).
    Column("correspondence", String(255), nullable=True),
    Column("correspondence_version", Integer, nullable=True),
    Column("language", String(35), nullable=True),
    # An email waiting for (or decided by) a reviewer: reviews.id.
    Column("review_id", Integer, nullable=True, index=True),
    Index("ix_outbox_claim", "status", "priority", "next_attempt_at", "id"),
    Index("ux_outbox_bounce_token", "bounce_token", unique=True),
    # The expiry sweep reads only rows that have an expiry (few: most emails have none).
    # status leads so that SQLite, which cannot match a partial index on status to bound
    # parameters, still seeks it; any comparison on expires_at implies the index's WHERE.
    Index(
        "ix_outbox_expiry",
        "status",
        "expires_at",
        postgresql_where=text(_HAS_EXPIRY),
        sqlite_where=text(_HAS_EXPIRY),
    ),
    Index("ix_outbox_lease", "status", "lease_expires_at"),
    # Which emails each version of a correspondence rendered (the version history).
    Index("ix_outbox_correspondence", "correspondence", "correspondence_version"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_beat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("sent", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    # Set by an operator: the agent keeps beating but claims nothing until resumed.
    Column("paused", Boolean, nullable=False, default=False, server_default="0"),
    # Why a running agent cannot work (the database is unavailable...), and how many
    # database errors came in a row: what an operator needs during an outage.
    Column("state_reason", Text, nullable=True),
    Column("db_errors", Integer, nullable=False, default=0, server_default="0"),
)

# An account's messages-per-minute budget, shared by every agent: a fixed one-minute window.
account_budgets = Table(
    "account_budgets",
    metadata,
    Column("account", String(255), primary_key=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("used", Integer, nullable=False),
)

# An account's connection slots, leased by agents: at most max_connections rows are live.
account_slots = Table(
    "account_slots",
    metadata,
    Column("account", String(255), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Bearer tokens of the REST API; only a SHA-256 of the secret part is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),  # ["send"] or ["admin"]
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# Admin Studio users; passwords are argon2id hashes.
admin_users = Table(
    "admin_users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Admin Studio sessions: the cookie carries the secret, the row its SHA-256.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "username",
        String(255),
        ForeignKey("admin_users.username", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Which API token created which case or email: a `send` token reads back only its own.
token_resources = Table(
    "token_resources",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("kind", String(16), primary_key=True),  # "case" or "email"
    Column("resource_id", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# What a POST with an Idempotency-Key answered, so that a retried request gets the same.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, index=True),
)

# How far each mailbox has been read, and which listener reads it: a lease, so that across
# all agents exactly one listener is active per mailbox.
inbound_mailboxes = Table(
    "inbound_mailboxes",
    metadata,
    Column("mailbox", String(520), primary_key=True),  # "<account>/<folder>"
    Column("account", String(255), nullable=False),
    Column("folder", String(255), nullable=False),
    Column("validity", String(64), nullable=True),  # IMAP UIDVALIDITY
    Column("position", Text, nullable=True),  # IMAP last UID; Graph delta or next link
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_poll_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every message read from a mailbox, committed before it is flagged, moved or deleted
# there. (mailbox, dedupe_key) makes ingest idempotent: the Message-ID, else a SHA-256
# of the raw bytes.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox", String(520), nullable=False),
    Column("account", String(255), nullable=False),
    Column("folder", String(255), nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("source_key", String(255), nullable=True),  # IMAP UID, Graph message id
    Column("validity", String(64), nullable=True),
    Column("message_id", String(998), nullable=True, index=True),
    Column("in_reply_to", Text, nullable=True),
    Column("subject", Text, nullable=False, default=""),
    Column("from_address", String(320), nullable=True),
    Column("from_name", String(255), nullable=False, default=""),
    Column("recipients", JSON, nullable=False),  # addresses from To, Cc, Delivered-To
    Column("sent_at", UTCDateTime, nullable=True),  # the Date header
    Column("received_at", UTCDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=True),  # None when too large
    Column("text", Text, nullable=False, default=""),  # the reply's own text
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("case_id", String(64), nullable=True, index=True),
    Column("defects", JSON, nullable=False),
    Column("attachments", Integer, nullable=False, default=0),
    Column("server_state", String(8), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ux_inbound_messages_dedupe", "mailbox", "dedupe_key", unique=True),
    Index("ix_inbound_messages_server", "mailbox", "server_state"),
    Index("ix_inbound_messages_status", "status", "received_at"),
)

# Emails that steps sent in answer to received mail, per recipient: loop protection
# counts them over the last hour.
auto_replies = Table(
    "auto_replies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False),
    Column("outbox_id", Integer, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_auto_replies_address", "address", "at"),
)
