"""priority and expiry of outbox emails, account limits; the claim index follows the claim's order

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

_DATETIME = postroom.db.types.UTCDateTime(timezone=True)
_WAITING_WITH_EXPIRY = "expires_at IS NOT NULL AND status IN ('queued', 'retry', 'held')"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("limits", sa.JSON(), nullable=True))
    op.create_table(
        "account_budgets",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("window_start", _DATETIME, nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_account_budgets")),
    )
    op.create_table(
        "account_slots",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("expires_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("account", "slot", name=op.f("pk_account_slots")),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(sa.Column("expires_at", _DATETIME, nullable=True))
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
    op.drop_table("account_slots")
    op.drop_table("account_budgets")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("limits")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_expires")
        batch.drop_index("ix_outbox_claim")
        batch.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch.drop_column("expires_at")
        batch.drop_column("priority")
