"""correspondence for regulated work: languages, versions, inline images, review before sending

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from postroom.db.types import UTCDateTime

_DATETIME = UTCDateTime(timezone=True)

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))
    with op.batch_alter_table("case_parties") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))
    with op.batch_alter_table("correspondence") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=False, server_default="en"))
        batch.add_column(sa.Column("translations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("images", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_by", sa.String(255), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("correspondence", sa.String(255), nullable=True))
        batch.add_column(sa.Column("correspondence_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))
        batch.add_column(sa.Column("review_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_outbox_review_id"), ["review_id"], unique=False)
        batch.create_index(
            "ix_outbox_correspondence", ["correspondence", "correspondence_version"], unique=False
        )
    op.create_table(
        "correspondence_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("translations", sa.JSON(), nullable=True),
        sa.Column("images", sa.JSON(), nullable=True),
        sa.Column("saved_by", sa.String(255), nullable=False),
        sa.Column("saved_at", _DATETIME, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_correspondence_versions"),
    )
    op.create_index(
        "ux_correspondence_versions", "correspondence_versions", ["name", "number"], unique=True
    )
    # Every record has a first version: what it holds now, saved by nobody known.
    op.execute(
        "INSERT INTO correspondence_versions "
        "(name, number, language, subject, html, text, saved_by, saved_at, note) "
        "SELECT name, 1, 'en', subject, html, text, 'unknown', updated_at, "
        "'the text before versions were kept' FROM correspondence"
    )
    op.create_table(
        "correspondence_images",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_correspondence_images"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("reviewer_kind", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("reviewer_operator", sa.String(128), nullable=True),
        sa.Column("reviewer_address", sa.String(320), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_at", _DATETIME, nullable=False),
        sa.Column("escalate_at", _DATETIME, nullable=True),
        sa.Column("escalated_at", _DATETIME, nullable=True),
        sa.Column("escalated_to", sa.String(128), nullable=True),
        sa.Column("decided_at", _DATETIME, nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("original", sa.JSON(), nullable=False),
        sa.Column("edited", sa.JSON(), nullable=True),
        sa.Column("drafts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_case_id", "reviews", ["case_id"])
    op.create_index("ix_reviews_state", "reviews", ["state", "escalate_at"])


def downgrade() -> None:
    op.drop_index("ix_reviews_state", table_name="reviews")
    op.drop_index("ix_reviews_case_id", table_name="reviews")
    op.drop_table("reviews")
    op.drop_table("correspondence_images")
    op.drop_index("ux_correspondence_versions", table_name="correspondence_versions")
    op.drop_table("correspondence_versions")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_correspondence")
        batch.drop_index(batch.f("ix_outbox_review_id"))
        for column in ("review_id", "language", "correspondence_version", "correspondence"):
            batch.drop_column(column)
    with op.batch_alter_table("correspondence") as batch:
        for column in ("updated_by", "version", "images", "translations", "language"):
            batch.drop_column(column)
    with op.batch_alter_table("case_parties") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("language")
