"""Worker liveness: a ``workers`` row per running task, and who claimed each file and listing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    # batch_alter_table: plain ALTER on PostgreSQL, and on SQLite too for added columns.
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): batch mode would copy the table, and dropping the old
    # copy with foreign keys on would cascade-delete the rows that refer to it.
    op.drop_column("jobs", "claimed_by")
    op.drop_column("files", "claimed_by")
    op.drop_table("workers")
