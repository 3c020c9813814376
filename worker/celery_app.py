"""The one Celery app of AER: ``celery -A worker.celery_app worker [-B]``.

The app is configured lazily, from :func:`api.config.load_settings`, the first time Celery reads
its configuration, so importing this module reads no settings and opens no connection. Workers
are therefore configured by ``AER_*`` environment variables, like the rest of the service.

Delivery is at-least-once: tasks are acknowledged after they finish, a message whose worker
died goes back to the queue, and the database (not a result backend) records what was done.
"""

from __future__ import annotations

from celery import Celery, signals
from kombu import Exchange, Queue

from api.config import Settings, load_settings
from api.db import dispose_engines

#: Queue of ``aer.process_chunk`` tasks (the bulk of the work).
CHUNK_QUEUE = "aer.chunks"
#: Queue of short control tasks (enumeration, sweep), so a long backlog never delays them.
CONTROL_QUEUE = "aer.control"
QUEUES = (CHUNK_QUEUE, CONTROL_QUEUE)


def celery_config(settings: Settings) -> dict:
    """The Celery configuration for ``settings`` (JSON only, late acks, no result backend)."""
    # Redis redelivers an unacknowledged message after visibility_timeout: it must outlast the
    # longest task, or a chunk still running would be handed to a second worker.
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "broker_url": settings.celery_broker_url,
        "broker_transport_options": transport,
        "result_backend": None,
        "result_backend_transport_options": dict(transport),
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_queues": tuple(Queue(q, Exchange(q, "direct"), routing_key=q) for q in QUEUES),
        "task_default_queue": CHUNK_QUEUE,
        "task_routes": {
            "aer.enumerate_job": {"queue": CONTROL_QUEUE},
            "aer.sweep": {"queue": CONTROL_QUEUE},
        },
        "beat_schedule": {
            "aer-sweep": {"task": "aer.sweep", "schedule": settings.sweep_interval_s},
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": False,
    }


def create_celery(settings: Settings) -> Celery:
    """A separate Celery app configured from ``settings`` (for control and tests; no tasks)."""
    celery = Celery("aer", set_as_current=False)
    celery.conf.update(celery_config(settings))
    return celery


app = Celery("aer", include=["worker.tasks"])


@app.on_configure.connect
def _configure(sender: Celery, **_kwargs) -> None:
    sender.conf.update(celery_config(load_settings()))


@signals.celeryd_init.connect
def _worker_starting(**_kwargs) -> None:
    # The data directory holds the schedule file of an embedded beat (``worker -B``).
    load_settings().data_dir.mkdir(parents=True, exist_ok=True)


@signals.worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Connections pooled before the fork belong to the parent process.
    dispose_engines()
