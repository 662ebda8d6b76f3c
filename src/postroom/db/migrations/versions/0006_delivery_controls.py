"""priority and expiry of outbox emails; the claim index follows the claim's order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import postroom.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING_WITH_EXPIRY = "expires_at IS NOT NULL AND status IN ('queued', 'retry', 'held')"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(
            sa.Column("expires_at", postroom.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.drop_index("ix_outbox_due")
        batch.create_index(
            "ix_outbox_claim", ["status", "priority", "next_attempt_at", "id"], unique=False
        )
        batch.create_index(
            "ix_outbox_expires",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text(_WAITING_WITH_EXPIRY),
            sqlite_where=sa.text(_WAITING_WITH_EXPIRY),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_expires")
        batch.drop_index("ix_outbox_claim")
        batch.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch.drop_column("expires_at")
        batch.drop_column("priority")
