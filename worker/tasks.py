"""Celery tasks: thin wrappers that load the settings and call :mod:`worker.pipeline`.

Arguments are JSON-safe ids. Every task may run more than once for the same message (late
acknowledgement), which the pipeline's conditional updates make harmless.
"""

from __future__ import annotations

import logging

from amqp.exceptions import ChannelError

from api.store import exports as export_rows
from api.store import trainings
from api.store.db import session_scope
from api.store.logs import log_context
from api.store.queue import (
    CHUNK_QUEUE,
    CHUNK_TASK,
    CONTROL_QUEUE,
    DELIVER_TASK,
    ENUMERATE_TASK,
    EXPORT_TASK,
    PURGE_TASK,
    SWEEP_TASK,
    TRAIN_TASK,
    delivery_countdown,
)
from api.store.settings import Settings, load_settings
from worker import exports, pipeline, retention, training, webhooks
from worker.celery_app import app

log = logging.getLogger(__name__)

#: A key the sweep keeps in the broker: missing, the broker restarted empty (messages lost).
BROKER_MARK = "aer:broker-mark"


@app.task(name=ENUMERATE_TASK)
def enumerate_job(job_id: str) -> None:
    """List a job's files, store them and enqueue their chunks."""
    with log_context(job_id=job_id):
        pipeline.run_enumeration(load_settings(), job_id, enqueue_chunk)


@app.task(name=CHUNK_TASK)
def process_chunk(job_id: str, file_ids: list[int]) -> None:
    """Classify a chunk of a job's files."""
    with log_context(job_id=job_id):
        done = pipeline.run_chunk(load_settings(), job_id, file_ids, enqueue_chunk)
        log.info("job %s: chunk of %s files, %s processed", job_id, len(file_ids), done)


@app.task(name=TRAIN_TASK)
def train_model(training_id: str) -> None:
    """Train a custom model from people's labels."""
    training.run_training(load_settings(), training_id)


@app.task(name=SWEEP_TASK)
def sweep() -> dict[str, int]:
    """Re-enqueue lost work and give up on files that keep killing workers."""
    lost = broker_lost_messages()
    settings = load_settings()
    counts = pipeline.run_sweep(
        settings,
        enqueue_chunk,
        enqueue_enumeration,
        queue_idle=queue_idle(CHUNK_QUEUE),
        control_idle=queue_idle(CONTROL_QUEUE),
        messages_lost=lost,
    )
    counts["requeued_trainings"] = resend(settings, lost, trainings.stalled_trainings, train_model)
    counts["requeued_exports"] = resend(settings, lost, export_rows.stalled_exports, export_results)
    if lost:  # only once the work is sent again: a sweep that dies midway retries it all
        mark_broker()
    return counts


def resend(settings: Settings, messages_lost: bool, stalled, task) -> int:
    """Send ``task`` again for the rows ``stalled(session, queued_for_s=...)`` returns (their
    message may be gone): all queued ones when the broker lost its messages, else those queued
    for longer than a lease (and, for trainings, any whose worker died)."""
    with session_scope(settings) as session:
        ids = stalled(session, queued_for_s=0.0 if messages_lost else settings.lease_s)
    for row_id in ids:
        task.apply_async(args=(row_id,))
    return len(ids)


@app.task(name=DELIVER_TASK)
def deliver_webhook(delivery_id: int) -> str | None:
    """Make one attempt to POST a webhook event; schedules the next one when it fails."""
    return webhooks.run_delivery(load_settings(), delivery_id, enqueue_attempt)


def enqueue_attempt(delivery_id: int, delay_s: float) -> None:
    """Send ``aer.deliver_webhook`` for an attempt due in ``delay_s`` (or leave a distant one to
    the sweep, see :func:`api.store.queue.delivery_countdown`)."""
    countdown = delivery_countdown(load_settings(), delay_s)
    if countdown is not None:
        deliver_webhook.apply_async(args=(delivery_id,), countdown=countdown)


@app.task(name=EXPORT_TASK)
def export_results(export_id: str) -> str | None:
    """Write a finished job's results to a bucket (CSV, JSON Lines or Parquet)."""
    return exports.run_export(load_settings(), export_id)


@app.task(name=PURGE_TASK)
def purge() -> dict[str, int]:
    """Delete audio, extracted zips and results past their retention (``purges`` records it)."""
    return retention.run_purge(load_settings())


def enqueue_enumeration(job_id: str) -> None:
    """Send ``aer.enumerate_job`` (call after the job's row is committed)."""
    enumerate_job.apply_async(args=(job_id,))


def enqueue_chunk(job_id: str, file_ids: list[int]) -> None:
    """Send one ``aer.process_chunk`` (call after the files' rows are committed)."""
    process_chunk.apply_async(args=(job_id, list(file_ids)))


def queue_idle(queue: str) -> bool:
    """Whether no message waits in ``queue`` (those being processed are not counted)."""
    with app.connection_for_read() as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).message_count == 0
        except ChannelError:  # Redis drops an empty list: no queue means no message
            return True


def broker_lost_messages() -> bool:
    """Whether the broker lacks :data:`BROKER_MARK`: it restarted without its data (or is new),
    so the messages of pending work are gone. False for a broker that is not Redis."""
    with app.connection_for_read() as conn:
        client = getattr(conn.default_channel, "client", None)
        return client is not None and not client.exists(BROKER_MARK)


def mark_broker() -> None:
    """Set :data:`BROKER_MARK` (no expiry: it lives as long as the broker's data)."""
    with app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is not None:
            client.set(BROKER_MARK, "1")
