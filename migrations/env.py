"""Alembic environment, configured in code by :func:`api.store.db.alembic_config` (no alembic.ini).

``api.store.db.upgrade`` passes an open connection in ``config.attributes["connection"]``; the
``sqlalchemy.url`` option is the fallback for running ``alembic`` commands by hand.
"""

from __future__ import annotations

from alembic import context

from api.store.db import make_engine
from api.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
