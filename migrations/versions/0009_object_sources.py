"""Jobs over a bucket prefix (``s3``) or a list of URLs (``urls``): the source kinds widen.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

#: As migration 0001 named it (the naming convention prefixed its name a second time).
NAME = "ck_jobs_ck_jobs_source_kind"
OLD = ("upload", "folder")
NEW = ("upload", "folder", "s3", "urls")


def _check(kinds: tuple[str, ...]) -> str:
    return f"source_kind IN ({', '.join(repr(k) for k in kinds)})"


def upgrade() -> None:
    _replace_check(OLD, NEW)


def downgrade() -> None:
    # The old schema cannot hold jobs of the new kinds: they go, with their files (cascade).
    op.execute(sa.text("DELETE FROM jobs WHERE source_kind IN ('s3', 'urls')"))
    _replace_check(NEW, OLD)


def _replace_check(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(NAME), "jobs", type_="check")
        op.create_check_constraint(op.f(NAME), "jobs", _check(new))
        return
    # SQLite cannot alter a constraint: batch mode would copy the jobs table, and dropping the
    # old copy with foreign keys on (they cannot be turned off inside the migration's
    # transaction) would cascade-delete every file. The CHECK only constrains new writes, so
    # the table's stored definition is rewritten in place, as SQLite documents for changing
    # CHECK constraints (https://sqlite.org/lang_altertable.html#otheralter).
    conn = op.get_bind()
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
    ).scalar_one()
    before = f"CONSTRAINT {NAME} CHECK ({_check(old)})"
    after = f"CONSTRAINT {NAME} CHECK ({_check(new)})"
    if before not in sql:
        raise RuntimeError(f"the jobs table has no constraint {before!r}: {sql}")
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'jobs'"),
        {"sql": sql.replace(before, after)},
    )
    conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = conn.exec_driver_sql("PRAGMA quick_check(jobs)").scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"the jobs table's new definition fails the check: {problems}")
