"""Whether the parts the service depends on answer: the database and the broker; and how many
messages wait in each queue."""

from __future__ import annotations

import time

import redis
from sqlalchemy import text

from api.store.db import get_engine
from api.store.settings import Settings

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


def _redis(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url(broker_url),
        socket_timeout=BROKER_TIMEOUT_S,
        socket_connect_timeout=BROKER_TIMEOUT_S,
    )


def queue_depths(broker_url: str, queues: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting in each queue (Redis ``LLEN``; tasks being run are not counted).

    Raises:
        redis.RedisError: the broker does not answer.
    """
    client = _redis(broker_url)
    try:
        return {queue: int(client.llen(queue)) for queue in queues}
    finally:
        client.close()


def check_broker(broker_url: str) -> str | None:
    """None when the broker answers PING, else why not."""
    try:
        client = _redis(broker_url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "down"; the message says why
        return f"{type(exc).__name__}: {exc}"
    return None


def beat_schedule_age(settings: Settings) -> float | None:
    """Seconds since Celery beat last wrote its schedule file (``<data dir>/celerybeat-schedule``,
    whatever suffix the dbm module adds), or None when there is none."""
    files = list(settings.data_dir.glob("celerybeat-schedule*"))
    if not files:
        return None
    return max(0.0, time.time() - max(f.stat().st_mtime for f in files))
