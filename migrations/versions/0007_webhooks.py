"""Webhooks: job callbacks, subscriptions and the record of every delivery attempt; the
processing time of each file (for the metrics).

Revision ID: 0007
Revises: 0008 (main's head when this branch was last merged with it; the lead re-chains)
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
STATES = "'pending', 'sending', 'delivered', 'failed', 'gave_up'"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("callback_secret", sa.String(100), nullable=True))
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("processing_s", sa.Double(), nullable=True))
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", JSONType, nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("progress_every", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_tenant_id"), "webhooks", ["tenant_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery", sa.String(32), nullable=False),
        sa.Column("webhook_id", sa.String(32), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("attempted_at", UTC, nullable=True),
        sa.Column("next_retry_at", UTC, nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_webhook_deliveries_state")),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "delivery", "attempt", name=op.f("uq_webhook_deliveries_delivery_attempt")
        ),
    )
    for columns in (["state", "due_at"], ["job_id", "id"], ["webhook_id", "id"]):
        name = op.f(f"ix_webhook_deliveries_{'_'.join(columns)}")
        op.create_index(name, "webhook_deliveries", columns)


def downgrade() -> None:
    for columns in (["webhook_id", "id"], ["job_id", "id"], ["state", "due_at"]):
        name = op.f(f"ix_webhook_deliveries_{'_'.join(columns)}")
        op.drop_index(name, table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhooks_tenant_id"), table_name="webhooks")
    op.drop_table("webhooks")
    # A plain DROP COLUMN (SQLite 3.35+), not batch mode: batch mode copies and drops the table,
    # and dropping jobs or files would cascade to their files and segments.
    op.execute(sa.text("ALTER TABLE files DROP COLUMN processing_s"))
    op.execute(sa.text("ALTER TABLE jobs DROP COLUMN callback_secret"))
    op.execute(sa.text("ALTER TABLE jobs DROP COLUMN callback_url"))
