"""keystores, S/MIME signing and DKIM settings of accounts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import postroom.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATETIME = postroom.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("signing", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dkim", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dkim_private_key", sa.Text(), nullable=True))
    op.create_table(
        "keystores",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("alias", sa.String(length=255), nullable=True),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_keystores")),
    )


def downgrade() -> None:
    op.drop_table("keystores")
    with op.batch_alter_table("accounts") as batch:
        for column in ("dkim_private_key", "dkim", "signing"):
            batch.drop_column(column)
