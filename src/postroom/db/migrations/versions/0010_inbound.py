"""two-way correspondence: inbound settings, mailboxes, received messages, auto-replies

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postroom.db.types import UTCDateTime

_DATETIME = UTCDateTime(timezone=True)

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("inbound", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("inbound_password", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "reply_to_plus_addressing",
                sa.Boolean(),
                nullable=False,
                server_default=sa.text("'0'"),
            )
        )
    op.create_table(
        "inbound_mailboxes",
        sa.Column("mailbox", sa.String(520), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("validity", sa.String(64), nullable=True),
        sa.Column("position", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", _DATETIME, nullable=True),
        sa.Column("last_poll_at", _DATETIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name="pk_inbound_mailboxes"),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox", sa.String(520), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("source_key", sa.String(255), nullable=True),
        sa.Column("validity", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("in_reply_to", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("from_address", sa.String(320), nullable=True),
        sa.Column("from_name", sa.String(255), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("sent_at", _DATETIME, nullable=True),
        sa.Column("received_at", _DATETIME, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("defects", sa.JSON(), nullable=False),
        sa.Column("attachments", sa.Integer(), nullable=False),
        sa.Column("server_state", sa.String(8), nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_messages"),
    )
    op.create_index(
        "ux_inbound_messages_dedupe", "inbound_messages", ["mailbox", "dedupe_key"], unique=True
    )
    op.create_index("ix_inbound_messages_server", "inbound_messages", ["mailbox", "server_state"])
    op.create_index("ix_inbound_messages_status", "inbound_messages", ["status", "received_at"])
    op.create_index("ix_inbound_messages_message_id", "inbound_messages", ["message_id"])
    op.create_index("ix_inbound_messages_case_id", "inbound_messages", ["case_id"])
    op.create_table(
        "auto_replies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auto_replies"),
    )
    op.create_index("ix_auto_replies_address", "auto_replies", ["address", "at"])


def downgrade() -> None:
    op.drop_table("auto_replies")
    op.drop_table("inbound_messages")
    op.drop_table("inbound_mailboxes")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("reply_to_plus_addressing")
        batch.drop_column("inbound_password")
        batch.drop_column("inbound")
