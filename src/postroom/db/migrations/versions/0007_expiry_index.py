"""the expiry sweep's index leads with status, so SQLite seeks it too

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_EXPIRY = "expires_at IS NOT NULL"
_WAITING_WITH_EXPIRY = "expires_at IS NOT NULL AND status IN ('queued', 'retry', 'held')"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_expires")
        batch.create_index(
            "ix_outbox_expiry",
            ["status", "expires_at"],
            unique=False,
            postgresql_where=sa.text(_HAS_EXPIRY),
            sqlite_where=sa.text(_HAS_EXPIRY),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_expiry")
        batch.create_index(
            "ix_outbox_expires",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text(_WAITING_WITH_EXPIRY),
            sqlite_where=sa.text(_WAITING_WITH_EXPIRY),
        )
