"""Tenancy: tenants, their API keys (hashes only), and the tenant and stored bytes of each job.

Jobs that exist before this revision belong to the ``default`` tenant, which it creates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("max_active_jobs", sa.Integer(), nullable=True),
        sa.Column("max_files_per_job", sa.Integer(), nullable=True),
        sa.Column("max_stored_mb", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.execute(tenants.insert().values(id="default", created_at=sa.func.current_timestamp()))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("last_used_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_api_keys_tenant_id_tenants"
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])

    # NOT NULL with a default, and no foreign key: SQLite can add such a column in place, while a
    # foreign key would make batch mode copy the jobs table, and dropping the old copy with
    # foreign keys on would cascade-delete every file and segment. Tenants are never deleted.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False)
        )
        batch.add_column(
            sa.Column("stored_bytes", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_index("ix_jobs_tenant_id_created_at", "jobs", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_id_created_at", table_name="jobs")
    # A plain DROP COLUMN (SQLite 3.35+) rather than batch mode, for the reason given above.
    op.execute(sa.text("ALTER TABLE jobs DROP COLUMN stored_bytes"))
    op.execute(sa.text("ALTER TABLE jobs DROP COLUMN tenant_id"))
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
