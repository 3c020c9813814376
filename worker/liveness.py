"""This process's heartbeat: a ``workers`` row per running task, kept fresh by one thread.

:func:`task_claim` registers a task and yields the id its claims carry; a daemon thread marks
every running task of the process seen each ``AER_HEARTBEAT_S``. When the process dies (or the
task ends), its rows stop being refreshed and the sweep takes their work back after
``AER_WORKER_TIMEOUT_S``: Celery's own heartbeats are per worker node, so they do not notice a
pool process killed under a live node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from api.store import workers
from api.store.db import session_scope
from api.store.settings import Settings

log = logging.getLogger(__name__)


class _Heart:
    """The running tasks of one process and the thread that reports them alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.running: set[str] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="aer-heartbeat", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.settings.heartbeat_s)
            with self.lock:
                ids = set(self.running)
            if not ids:
                continue
            try:
                with session_scope(self.settings) as session:
                    workers.beat(session, ids)
            except Exception:  # the database may be busy: the next beat tries again
                log.warning("heartbeat of %s failed", sorted(ids), exc_info=True)


_hearts: dict[str, _Heart] = {}  # by database URL
_hearts_lock = threading.Lock()


def _get_heart(settings: Settings) -> _Heart:
    with _hearts_lock:
        heart = _hearts.get(settings.database_url)
        if heart is None or heart.pid != os.getpid():  # threads do not survive a fork
            heart = _hearts[settings.database_url] = _Heart(settings)
        return heart


@contextmanager
def task_claim(settings: Settings, task: str) -> Iterator[str]:
    """Register a running ``task`` and keep it alive until the block exits; yields its id.

    Raises the database's error when the task cannot be registered (then it claims nothing).
    """
    worker_id = f"{uuid.uuid4().hex[:12]}@{socket.gethostname()}"[:64]
    with session_scope(settings) as session:
        workers.register(
            session, worker_id, hostname=socket.gethostname(), pid=os.getpid(), task=task
        )
    heart = _get_heart(settings)
    with heart.lock:
        heart.running.add(worker_id)
    try:
        yield worker_id
    finally:
        with heart.lock:
            heart.running.discard(worker_id)
        try:
            with session_scope(settings) as session:
                workers.forget(session, worker_id)
        except Exception:  # left to go stale: the sweep treats it as gone all the same
            log.warning("could not remove task %s", worker_id, exc_info=True)
