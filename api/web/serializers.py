"""What responses look like: database rows turned into the JSON shapes of
:mod:`api.web.schemas` (links built with ``url_for``). The rows of the result tables (CSV, JSON
Lines, Parquet) are built by :mod:`api.store.tabular`. Nothing here reads the database."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import url_for

from api.store.resultview import ResultView
from api.store.tables import ApiKey, Export, FileState, Job, JobState, Webhook, WebhookDelivery
from api.store.tabular import iso

# --- responses ------------------------------------------------------------------------------


def _seconds_since(value: datetime | None, now: datetime) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return max((now - value).total_seconds(), 0.0)


def progress(
    state: str, counts: Mapping[str, int], started_at, now: datetime, recovering: int = 0
) -> dict:
    """``percent``, ``files_per_second`` and ``eta_s`` from file counts (no ``eta_s`` while
    ``recovering`` files wait for the sweep: the rate says nothing about when that is)."""
    total = counts.get("total", 0)
    finished = counts.get("done", 0) + counts.get("failed", 0)
    terminal = state not in (JobState.QUEUED, JobState.RUNNING)
    percent = 100.0 if terminal and not total else (100.0 * finished / total if total else 0.0)
    rate = eta = None
    elapsed = _seconds_since(started_at, now)
    if state == JobState.RUNNING and elapsed and finished:
        rate = finished / elapsed
        eta = (total - finished) / rate if total >= finished and not recovering else None
    return {
        "percent": round(percent, 2),
        "files_per_second": None if rate is None else round(rate, 3),
        "eta_s": None if eta is None or not math.isfinite(eta) else round(eta, 1),
    }


def job_links(job_id: str) -> dict:
    """Where the job, its results and its CSV export live."""
    return {
        "self": url_for("jobs.get_job", job_id=job_id),
        "results": url_for("results.get_results", job_id=job_id),
        "csv": url_for("results.export_results", job_id=job_id, fmt="csv"),
    }


def job_json(job: Job, counts: Mapping[str, int], recovering: int = 0) -> dict:
    """The JSON shape of a job with its file counts and how many of its files wait for
    recovery (:class:`api.web.schemas.Job`)."""
    counts = {"total": 0, **{s.value: 0 for s in FileState}, **counts}
    return {
        "id": job.id,
        "state": job.state,
        "source": {"kind": job.source_kind},
        "options": job.options or {},
        "model": {"name": job.model_name, "version": job.model_version},
        "counts": counts,
        **progress(job.state, counts, job.started_at, now_utc(), recovering),
        "recovering": recovering,
        "error": job.error,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "links": job_links(job.id),
        "callback_url": job.callback_url,
    }


def webhook_json(hook: Webhook, *, with_secret: bool = False) -> dict:
    """A subscription (:class:`api.web.schemas.Webhook`); its secret only when just created."""
    body = {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "progress_every": hook.progress_every,
        "created_at": iso(hook.created_at),
    }
    return body | ({"secret": hook.secret} if with_secret else {})


def delivery_json(row: WebhookDelivery) -> dict:
    """One delivery attempt (:class:`api.web.schemas.Delivery`), without body or secret."""
    return {
        "id": row.id,
        "delivery": row.delivery,
        "webhook_id": row.webhook_id,
        "job_id": row.job_id,
        "event": row.event,
        "url": row.url,
        "attempt": row.attempt,
        "state": row.state,
        "status_code": row.status_code,
        "error": row.error,
        "created_at": iso(row.created_at),
        "due_at": iso(row.due_at),
        "attempted_at": iso(row.attempted_at),
        "next_retry_at": iso(row.next_retry_at),
    }


def export_json(export: Export) -> dict:
    """A bucket export (:class:`api.web.schemas.Export`)."""
    bucket = export.destination.removeprefix("s3://").partition("/")[0]
    return {
        "id": export.id,
        "job_id": export.job_id,
        "state": export.state,
        "destination": export.destination,
        "object": f"s3://{bucket}/{export.object_key}",
        "format": export.format,
        "options": export.options or {},
        "bytes": export.bytes,
        "error": export.error,
        "created_at": iso(export.created_at),
        "started_at": iso(export.started_at),
        "finished_at": iso(export.finished_at),
        "links": {
            "self": url_for("exports.get_export", job_id=export.job_id, export_id=export.id),
            "job": url_for("jobs.get_job", job_id=export.job_id),
        },
    }


def result_row(row: Any, view: ResultView, links: dict | None = None) -> dict:
    """One file's result (``row`` is a ``File`` row or any object with its attributes)."""
    return {
        "id": row.id,
        "file": row.rel_path,
        "state": row.state,
        "duration_s": row.duration_s,
        "sample_rate": row.sample_rate,
        "channels": row.channels,
        "label": row.label,
        "confidence": row.confidence,
        "uncertain": view.uncertain(row.confidence, row.ood),
        "ood": row.ood,
        "probabilities": view.ordered(row.probabilities),
        "attempts": row.attempts,
        "error": row.error,
        "error_code": row.error_code,
        "processed_at": iso(row.processed_at),
        "model_version": row.model_version,
        "segment_count": row.segment_count,
        "summary": view.summary(row.summary),
        "corrected_label": row.corrected_label,
        "links": links or {},
    }


def segment_row(segment: Any, view: ResultView) -> dict:
    """One classified segment (``segment`` is a ``Segment`` row or alike)."""
    return {
        "id": segment.id,
        "channel": segment.channel,
        "channel_name": view.channel_name(segment.channel),
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "label": segment.label,
        "confidence": segment.confidence,
        "uncertain": view.uncertain(segment.confidence, segment.ood),
        "ood": segment.ood,
        "probabilities": view.ordered(segment.probabilities),
        "corrected_label": segment.corrected_label,
    }


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def label_json(job_id: str, file_id: int, row: Any, segment_id: int | None = None) -> dict:
    """A corrected label of a file or segment row (:class:`api.web.schemas.Label`)."""
    out = {"job_id": job_id, "file_id": file_id, "label": row.corrected_label}
    if segment_id is not None:
        out["segment_id"] = segment_id
    return out | {"corrected_at": iso(row.corrected_at)}


def training_json(training: Any) -> dict:
    """A training row (:class:`api.web.schemas.Training`)."""
    done = training.state == "succeeded"
    return {
        "id": training.id,
        "name": training.name,
        "state": training.state,
        "source": training.source,
        "options": training.options,
        "progress": training.progress,
        "model_version": training.model_version,
        "metrics": training.metrics,
        "error": training.error,
        "created_at": iso(training.created_at),
        "started_at": iso(training.started_at),
        "finished_at": iso(training.finished_at),
        "links": {
            "self": url_for("models.get_training", training_id=training.id),
            "model": url_for("models.get_model", name=training.name) if done else None,
        },
    }


def key_json(row: ApiKey, now: datetime | None = None) -> dict:
    """An API key's public fields (never its hash)."""
    now = now or datetime.now(UTC)
    expired = row.expires_at is not None and row.expires_at <= now
    return {
        "id": row.id,
        "prefix": row.prefix,
        "name": row.name,
        "tenant": row.tenant_id,
        "scopes": row.scopes.split(),
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
        "active": row.revoked_at is None and not expired,
    }
