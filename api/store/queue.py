"""The queue contract between the API and the workers: task and queue names, the Celery
configuration both sides use, and the producer the API sends work with.

Tasks carry ids only. The database, not the queue, records what is done: a message may be lost
(the sweep re-sends the work) or delivered twice (every state change is conditional).
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu import Exchange, Queue

from api.store.settings import Settings

log = logging.getLogger(__name__)

#: Task that lists a job's files and enqueues their chunks.
ENUMERATE_TASK = "aer.enumerate_job"
#: Task that classifies one chunk of a job's files.
CHUNK_TASK = "aer.process_chunk"
#: Task that trains a custom model from people's labels.
TRAIN_TASK = "aer.train_model"
#: Periodic task (beat) that re-enqueues work lost with a dead worker.
SWEEP_TASK = "aer.sweep"
#: Task that makes one attempt to POST a webhook event (``api.store.webhooks``).
DELIVER_TASK = "aer.deliver_webhook"
#: Periodic task (beat) that deletes audio and results past their retention.
PURGE_TASK = "aer.purge"
#: Task that writes a finished job's results to a bucket (``api.store.exports``).
EXPORT_TASK = "aer.export_results"

#: Queue of chunk tasks (the bulk of the work).
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
            ENUMERATE_TASK: {"queue": CONTROL_QUEUE},
            SWEEP_TASK: {"queue": CONTROL_QUEUE},
            DELIVER_TASK: {"queue": CONTROL_QUEUE},
            PURGE_TASK: {"queue": CONTROL_QUEUE},
            EXPORT_TASK: {"queue": CONTROL_QUEUE},
        },
        "beat_schedule": {
            "aer-sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s},
            # As often as the sweep: a run that finds nothing to delete lists the upload
            # folders and reads their jobs' ends, nothing more.
            "aer-purge": {"task": PURGE_TASK, "schedule": settings.sweep_interval_s},
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": False,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery client configured from ``settings``: sends tasks by name, defines none."""
    celery = Celery("aer", set_as_current=False)
    celery.conf.update(celery_config(settings))
    return celery


def enqueue_enumeration(celery: Celery, job_id: str) -> bool:
    """Send :data:`ENUMERATE_TASK` for a committed job; False when the broker is down.

    The job stands either way: the sweep enqueues a job that stayed queued (after
    ``AER_LEASE_S``).
    """
    return _send(celery, ENUMERATE_TASK, job_id, f"job {job_id}")


def enqueue_training(celery: Celery, training_id: str) -> bool:
    """Send :data:`TRAIN_TASK` for a committed training; False when the broker is down (the
    training then stays queued: nothing sends it again yet)."""
    return _send(celery, TRAIN_TASK, training_id, f"training {training_id}")


def enqueue_export(celery: Celery, export_id: str) -> bool:
    """Send :data:`EXPORT_TASK` for a committed export; False when the broker is down (the
    export then stays queued: nothing sends it again yet)."""
    return _send(celery, EXPORT_TASK, export_id, f"export {export_id}")


def _send(celery: Celery, task: str, target_id: str, what: str) -> bool:
    from kombu.exceptions import OperationalError

    try:
        celery.send_task(task, args=(target_id,))
    except OperationalError as exc:
        log.warning("%s: broker unavailable (%s)", what, exc)
        return False
    return True


def delivery_countdown(settings: Settings, delay_s: float) -> float | None:
    """The countdown to send a delivery attempt due in ``delay_s`` with, or None when it is too
    far off: Redis would redeliver a message held longer than its visibility timeout, so a late
    attempt is left to the sweep, which enqueues attempts once they are due."""
    return max(0.0, delay_s) if delay_s < settings.visibility_timeout_s / 2 else None


def enqueue_deliveries(celery: Celery, delivery_ids: list[int], countdown: float = 0.0) -> bool:
    """Send :data:`DELIVER_TASK` for committed attempt rows; False when the broker is down (the
    sweep sends them later)."""
    from kombu.exceptions import OperationalError

    try:
        for delivery_id in delivery_ids:
            celery.send_task(DELIVER_TASK, args=(delivery_id,), countdown=countdown or None)
    except OperationalError as exc:
        log.warning(
            "webhooks %s: broker unavailable (%s); the sweep will send them", delivery_ids, exc
        )
        return False
    return True
