"""Purges: what the retention task deleted, when, and how much.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "purges",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=True),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_purges"),
        sa.CheckConstraint("kind IN ('audio', 'extracted', 'results')", name="ck_purges_kind"),
    )
    op.create_index("ix_purges_ran_at", "purges", ["ran_at"])


def downgrade() -> None:
    op.drop_index("ix_purges_ran_at", table_name="purges")
    op.drop_table("purges")
