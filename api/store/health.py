"""Whether the parts the service depends on answer: the database and the broker."""

from __future__ import annotations

import redis
from sqlalchemy import text

from api.store.db import get_engine

#: Seconds the health check waits for the broker before calling it down.
BROKER_TIMEOUT_S = 2.0


def redis_url(broker_url: str) -> str:
    """The redis-py URL of a Celery broker URL (``redis+socket://`` becomes ``unix://``)."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url


def check_database(database_url: str) -> str | None:
    """None when the database answers ``SELECT 1``, else why not."""
    try:
        with get_engine(database_url).connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
    except Exception as exc:  # any failure means "down"; the message says why
        return f"{type(exc).__name__}: {exc}"
    return None


def check_broker(broker_url: str) -> str | None:
    """None when the broker answers PING, else why not."""
    try:
        client = redis.Redis.from_url(
            redis_url(broker_url),
            socket_timeout=BROKER_TIMEOUT_S,
            socket_connect_timeout=BROKER_TIMEOUT_S,
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "down"; the message says why
        return f"{type(exc).__name__}: {exc}"
    return None
