"""Engines, sessions and migrations: the one place database connections are opened and closed.

SQLite gets WAL mode, foreign keys, a busy timeout and ``BEGIN IMMEDIATE`` transactions (so a
transaction that reads and then writes never fails on a stale snapshot). PostgreSQL
(``postgresql+psycopg://``) gets a pre-pinged pool. Engines are fork-safe: a pooled connection
is never used by a process other than the one that opened it, and :func:`dispose_engines` (run
in each forked Celery worker process) drops inherited ones at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

import migrations
from api.store.settings import Settings

MIGRATIONS_DIR = Path(next(iter(migrations.__path__))).resolve()
#: How long a SQLite connection waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000

# One engine per URL per process, so every session of a process shares its pool.
_engines: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Pooled: closing the last connection to a WAL database checkpoints it (slow).
        engine = create_engine(url, poolclass=QueuePool, pool_size=2)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "connect", _remember_pid)
    event.listen(engine, "checkout", _refuse_other_pid)
    return engine


def _remember_pid(_dbapi_connection, record) -> None:
    record.info["pid"] = os.getpid()


def _refuse_other_pid(_dbapi_connection, record, proxy) -> None:
    # A connection inherited through fork() belongs to the parent: never use it here.
    if record.info.get("pid") != os.getpid():
        record.dbapi_connection = proxy.dbapi_connection = None
        raise DisconnectionError("connection was opened in another process")


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (created on first use)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    """Forget pooled connections inherited from a parent process (call right after fork)."""
    for engine in _engines.values():
        engine.dispose(close=False)


@contextmanager
def session_scope(target: Settings | Engine | str) -> Iterator[Session]:
    """A session that commits on success, rolls back and re-raises on error, always closes.

    ``target`` is the settings, an engine, or a database URL. Objects stay readable after the
    block (``expire_on_commit=False``).
    """
    if isinstance(target, Engine):
        engine = target
    else:
        engine = get_engine(target.database_url if isinstance(target, Settings) else target)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_new(session: Session, table, rows: list[dict], unique: list[str]) -> list[int]:
    """Insert ``rows`` into the ORM class ``table``, skipping those whose ``unique`` columns
    match an existing row (``ON CONFLICT DO NOTHING``, SQLite and PostgreSQL alike); returns
    the ids inserted."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).on_conflict_do_nothing(index_elements=unique)
    return list(session.scalars(stmt.returning(table.id), rows).all())


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url``, built in code (works from any cwd)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (creates the schema on an empty database)."""
    _run(command.upgrade, database_url, revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert the migrations down to ``revision`` (``"base"`` drops every table)."""
    _run(command.downgrade, database_url, revision)


def _run(fn, database_url: str, revision: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config(database_url)
            config.attributes["connection"] = connection
            fn(config, revision)
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest migration's revision id."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
