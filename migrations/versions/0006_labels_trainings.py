"""Corrected labels and out-of-domain scores on files and segments; custom-model trainings.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)
STATES = "'queued', 'running', 'succeeded', 'failed'"


def upgrade() -> None:
    for table in ("files", "segments"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("corrected_label", sa.String(100), nullable=True))
            batch.add_column(sa.Column("corrected_at", UTC, nullable=True))
            batch.add_column(sa.Column("ood", sa.Double(), nullable=True))
    op.create_table(
        "trainings",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), server_default="queued", nullable=False),
        sa.Column("source", JSONType, nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("progress", JSONType, nullable=True),
        sa.Column("model_version", sa.String(100), nullable=True),
        sa.Column("metrics", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_trainings_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trainings")),
    )
    op.create_index(op.f("ix_trainings_state_created_at"), "trainings", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_trainings_state_created_at"), table_name="trainings")
    op.drop_table("trainings")
    for table in ("segments", "files"):
        # Plain DROP COLUMN (SQLite 3.35+): a batch copy of files would cascade-delete segments.
        for column in ("ood", "corrected_at", "corrected_label"):
            op.drop_column(table, column)
