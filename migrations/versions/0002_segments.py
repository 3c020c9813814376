"""Segments: per-segment emotion timelines of a file, and the file's timeline summary.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # batch_alter_table: plain ALTER on PostgreSQL, and on SQLite too for added columns.
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("summary", JSONType, nullable=True))
        batch.add_column(sa.Column("segment_count", sa.Integer(), nullable=True))

    op.create_table(
        "segments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("file_id", BigId, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Double(), nullable=False),
        sa.Column("end_s", sa.Double(), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("probabilities", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name="fk_segments_file_id_files", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_segments_job_id_jobs", ondelete="CASCADE"
        ),
        # Its index serves file_id lookups too (first column).
        sa.UniqueConstraint(
            "file_id", "channel", "start_s", name="uq_segments_file_id_channel_start_s"
        ),
    )
    op.create_index("ix_segments_job_id_id", "segments", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_segments_job_id_id", table_name="segments")
    op.drop_table("segments")
    # SQLite: the files table is copied without the two columns (its constraints come along).
    with op.batch_alter_table("files") as batch:
        batch.drop_column("segment_count")
        batch.drop_column("summary")
