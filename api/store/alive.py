"""How many Celery worker processes are alive, behind one function.

The ``workers`` table (:mod:`api.store.workers`) holds a row per *running task* only, so it
cannot tell an idle worker from a dead one; a broadcast ping can. Callers use
:func:`live_workers` alone, so the way of asking can change without them.
"""

from __future__ import annotations

from api.store.queue import create_celery
from api.store.settings import Settings


def live_workers(settings: Settings, *, enough: int | None = None) -> int:
    """How many workers answer a broadcast ping within ``AER_WORKER_PING_TIMEOUT_S`` (0 when
    none does or the broker is down); with ``enough``, stop waiting once that many answered."""
    celery = create_celery(settings)
    try:
        replies = celery.control.ping(timeout=settings.worker_ping_timeout_s, limit=enough) or []
    except Exception:  # a broker that is down means no worker can be reached
        return 0
    finally:
        celery.close()
    return len(replies)
