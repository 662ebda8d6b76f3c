"""an attachment's name is unique within its case, enforced by the database

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 06:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Duplicates could only come from concurrent uploads: the later ones keep their
    # content under the name with their id appended, so nothing is lost.
    op.execute(
        "UPDATE case_attachments SET name = name || '-' || CAST(id AS VARCHAR(20)) "
        "WHERE id NOT IN (SELECT MIN(id) FROM case_attachments GROUP BY case_id, name)"
    )
    with op.batch_alter_table("case_attachments") as batch:
        batch.create_index("ux_case_attachments_name", ["case_id", "name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("case_attachments") as batch:
        batch.drop_index("ux_case_attachments_name")
