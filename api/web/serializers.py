"""What responses look like: database rows turned into the JSON shapes of
:mod:`api.web.schemas` (links built with ``url_for``) and into CSV lines. Nothing here reads
the database."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import url_for

from api.store.tables import ApiKey, FileState, Job, JobState, Webhook, WebhookDelivery
from core.ood import is_uncertain

#: Columns of the CSV export that come before the per-class probabilities.
CSV_HEAD = ("file", "state", "duration_s", "sample_rate", "channels", "label", "confidence")
#: Columns of the CSV export that come after the per-class probabilities.
CSV_TAIL = ("error", "error_code", "processed_at", "model_version")
#: Timeline columns at the end of the per-file CSV (from the file's segment summary).
CSV_TIMELINE = ("uncertain", "segment_count", "dominant", "speech_s", "silence_s")
#: Decimals of probabilities and confidences, and of seconds, in the CSV (unless full precision).
PROBABILITY_DIGITS = 4
SECONDS_DIGITS = 3
#: Columns of the per-segment CSV before the probabilities (``uncertain`` comes last).
SEGMENT_CSV_HEAD = (
    "file", "file_id", "channel", "channel_name", "start_s", "end_s", "label", "confidence"
)  # fmt: skip


# --- responses ------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite returns naive datetimes; they are UTC by convention)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
        "csv": url_for("results.export_results", job_id=job_id),
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


@dataclass(frozen=True)
class ResultView:
    """How one job's stored results are presented.

    ``labels`` are the model's classes in its order (probabilities are listed in that order:
    PostgreSQL's JSONB keeps no key order); ``uncertain_below`` is the confidence under which a
    result is flagged ``uncertain``; ``channel_name`` names a channel index; ``full_precision``
    keeps every digit of the CSV's numbers (else probabilities have 4 decimals, seconds 3).
    """

    labels: tuple[str, ...]
    uncertain_below: float
    channel_name: Callable[[int], str]
    ood_above: float | None = None
    full_precision: bool = False

    def p(self, value: Any) -> Any:
        """A probability or confidence as the CSV shows it: 4 decimals unless full precision."""
        return _rounded(value, None if self.full_precision else PROBABILITY_DIGITS)

    def s(self, value: Any) -> Any:
        """Seconds as the CSV shows them: 3 decimals (milliseconds) unless full precision."""
        return _rounded(value, None if self.full_precision else SECONDS_DIGITS)

    def uncertain(self, confidence: float | None, ood: float | None = None) -> bool | None:
        """Whether a result is uncertain (None without a result): its ``confidence`` is under
        the threshold, or its audio's ``ood`` score is above ``ood_above`` (off-domain)."""
        if confidence is None:
            return None
        return is_uncertain(
            confidence, ood, uncertain_below=self.uncertain_below, ood_above=self.ood_above
        )

    def ordered(self, values: Mapping[str, float] | None) -> dict[str, float]:
        """``values`` keyed by label, in the model's label order (unknown labels last)."""
        values = values or {}
        out = {label: values[label] for label in self.labels if label in values}
        return out | {k: v for k, v in values.items() if k not in out}

    def summary(self, summary: Mapping[str, Any] | None) -> dict | None:
        """A stored timeline summary (``core.timeline.summarize``) with channel names added."""
        if not summary:
            return None
        out = self._channel_summary(summary)
        if "channels" in summary:
            out["channels"] = [
                {"channel": c["channel"], "channel_name": self.channel_name(c["channel"])}
                | self._channel_summary(c)
                for c in summary["channels"]
            ]
        return out

    def _channel_summary(self, summary: Mapping[str, Any]) -> dict:
        worst = summary.get("most_negative")
        if worst is not None:
            worst = {
                "channel": worst["channel"],
                "channel_name": self.channel_name(worst["channel"]),
                **{k: v for k, v in worst.items() if k != "channel"},
            }
        return {
            "dominant": summary.get("dominant"),
            "shares": self.ordered(summary.get("shares")),
            "speech_s": summary.get("speech_s"),
            "silence_s": summary.get("silence_s"),
            "duration_s": summary.get("duration_s"),
            "n_segments": summary.get("n_segments"),
            "most_negative": worst,
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


def csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-file CSV columns: file facts, one ``p_<label>`` per class, errors and provenance,
    then the timeline columns."""
    probabilities = (f"p_{label}" for label in labels)
    return [*CSV_HEAD, *probabilities, *CSV_TAIL, *CSV_TIMELINE, "ood", "corrected_label"]


def csv_row(row: Any, view: ResultView) -> list:
    """One per-file CSV line (missing probabilities and summary values are left empty)."""
    probs = row.probabilities or {}
    summary = row.summary or {}
    head = [row.rel_path, row.state, view.s(row.duration_s), row.sample_rate, row.channels]
    head += [row.label, view.p(row.confidence)]
    tail = [row.error, row.error_code, iso(row.processed_at), row.model_version]
    timeline = [_csv_bool(view.uncertain(row.confidence, row.ood)), row.segment_count]
    timeline += [summary.get("dominant"), view.s(summary.get("speech_s"))]
    timeline += [view.s(summary.get("silence_s"))]
    probabilities = (view.p(probs.get(label, "")) for label in view.labels)
    return [*head, *probabilities, *tail, *timeline, view.p(row.ood), row.corrected_label]


def segment_csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-segment CSV columns: where the segment is, its label, one ``p_<label>`` per class,
    then ``uncertain``."""
    probabilities = (f"p_{label}" for label in labels)
    return [*SEGMENT_CSV_HEAD, *probabilities, "uncertain", "ood", "corrected_label"]


def segment_csv_row(rel_path: str, segment: Any, view: ResultView) -> list:
    """One per-segment CSV line."""
    probs = segment.probabilities or {}
    head = [rel_path, segment.file_id, segment.channel, view.channel_name(segment.channel)]
    head += [view.s(segment.start_s), view.s(segment.end_s), segment.label]
    head += [view.p(segment.confidence)]
    uncertain = _csv_bool(view.uncertain(segment.confidence, segment.ood))
    probabilities = (view.p(probs.get(label, "")) for label in view.labels)
    return [*head, *probabilities, uncertain, view.p(segment.ood), segment.corrected_label]


def csv_text(rows: Iterable[list], header: list[str] | None = None) -> str:
    """CSV lines for ``rows`` (after ``header`` when given); text cells are made inert for
    spreadsheets (see ``_inert``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows([_inert(cell) for cell in row] for row in rows)
    return buffer.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(cell: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (a file named ``=HYPERLINK(...)``
    in an uploaded zip) gets a leading apostrophe, as OWASP advises; numbers pass unchanged."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def _rounded(value: Any, digits: int | None) -> Any:
    if digits is None or not isinstance(value, float):
        return value
    return round(value, digits)


def _csv_bool(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


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
