"""authentication profiles, Graph account fields, account holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import postroom.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATETIME = postroom.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("auth_profile", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("user_principal_name", sa.String(length=320), nullable=True))
        batch.add_column(
            sa.Column(
                "graph_url",
                sa.String(length=255),
                nullable=False,
                server_default="https://graph.microsoft.com",
            )
        )
        batch.add_column(
            sa.Column("save_to_sent_items", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column(
                "on_unknown_outcome", sa.String(length=8), nullable=False, server_default="retry"
            )
        )
    # The defaults filled existing rows; the application always writes these columns.
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("graph_url", server_default=None)
        batch.alter_column("save_to_sent_items", server_default=None)
        batch.alter_column("on_unknown_outcome", server_default=None)
    op.create_table(
        "auth_profiles",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("grant_type", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=True),
        sa.Column("authority", sa.String(length=255), nullable=False),
        sa.Column("token_endpoint", sa.Text(), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_auth_profiles")),
    )
    op.create_table(
        "account_holds",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", _DATETIME, nullable=False),
        sa.Column("check_at", _DATETIME, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_account_holds")),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("hold", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("hold")
    op.drop_table("account_holds")
    op.drop_table("auth_profiles")
    with op.batch_alter_table("accounts") as batch:
        for column in (
            "on_unknown_outcome",
            "save_to_sent_items",
            "graph_url",
            "user_principal_name",
            "auth_profile",
        ):
            batch.drop_column(column)
