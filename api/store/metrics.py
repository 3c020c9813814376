"""Prometheus metrics, computed from the record at scrape time.

Every value is read when ``/metrics`` is scraped: job and file counts, processing and audio
seconds (each file's ``processing_s`` and ``duration_s``), webhook attempts by state from the
database; queue depths from Redis; live workers from a ping. So every API process answers the
same exact numbers, whichever process or machine did the work, with no shared metrics folder
(prometheus-client's multiprocess mode) to mount, clean up or keep from mixing up processes of
different containers that share a pid. The database values are current totals, not counters: a
deleted job takes its files out of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.store import deliveries, health
from api.store.alive import live_workers
from api.store.queue import QUEUES
from api.store.settings import Settings
from api.store.states import FileState, JobState
from api.store.tables import File, Job

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RecordCollector(Collector):
    """The AER metrics of ``settings``' broker and workers and of the database ``session``."""

    def __init__(self, settings: Settings, session: Session) -> None:
        self.settings = settings
        self.session = session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._database()
        yield from self._broker()
        workers = GaugeMetricFamily("aer_workers_alive", "Celery workers that answered a ping")
        workers.add_metric([], live_workers(self.settings))
        yield workers

    def _database(self) -> Iterator[GaugeMetricFamily]:
        session = self.session
        jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        files = dict(session.execute(select(File.state, func.count()).group_by(File.state)).all())
        timed = File.processing_s.is_not(None) & File.duration_s.is_not(None)
        processing_s, audio_s = session.execute(
            select(
                func.coalesce(func.sum(File.processing_s), 0.0),
                func.coalesce(func.sum(File.duration_s), 0.0),
            ).where(File.state == FileState.DONE, timed)
        ).one()
        attempts = deliveries.counts_by_state(session)
        yield _by_label("aer_jobs", "Jobs in each state", "state", jobs, JobState)
        yield _by_label("aer_files", "Files in each state", "state", files, FileState)
        yield _gauge("aer_processing_seconds", "Seconds workers spent on done files", processing_s)
        yield _gauge("aer_audio_seconds", "Seconds of audio in done files", audio_s)
        yield _gauge(
            "aer_processing_seconds_per_audio_second",
            "Processing time per second of audio, over the done files (real-time factor)",
            processing_s / audio_s if audio_s else 0.0,
        )
        yield _by_label(
            "aer_webhook_attempts", "Webhook delivery attempts in each state", "state",
            attempts, attempts,
        )  # fmt: skip
        yield _gauge(
            "aer_webhook_failed_attempts",
            "Webhook attempts that failed (retried later, or given up)",
            attempts.get("failed", 0) + attempts.get("gave_up", 0),
        )

    def _broker(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aer_queue_depth", "Tasks waiting in each broker queue", labels=["queue"]
        )
        up = GaugeMetricFamily("aer_broker_up", "1 when the broker answered the scrape")
        try:
            depths = health.queue_depths(self.settings.celery_broker_url, QUEUES)
        except Exception as exc:  # a scrape still answers the database's numbers
            log.warning("metrics: broker unavailable (%s)", exc)
            up.add_metric([], 0)
        else:
            for queue, depth in depths.items():
                family.add_metric([queue], depth)
            up.add_metric([], 1)
        yield family
        yield up


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _by_label(name, documentation, label, values, every) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key in every:
        family.add_metric([str(key)], values.get(key, values.get(str(key), 0)))
    return family


def render(settings: Settings, session: Session) -> bytes:
    """The metrics in Prometheus' text format (the database read through ``session``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecordCollector(settings, session))
    return generate_latest(registry)
