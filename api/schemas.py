"""Request validation and the JSON shapes of the API.

Parsers take plain mappings (``request.args``, a JSON body, form fields) and return frozen
dataclasses or raise a 422 :class:`~api.errors.APIError` naming the bad field; serializers turn
database rows into JSON-safe dicts. Nothing here touches the database or the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.errors import APIError
from api.jobs import CHANNEL_MODES, SEGMENTATIONS, InvalidOptionsError, analysis_options

JOB_STATES = ("queued", "running", "succeeded", "completed_with_errors", "failed", "cancelled")
FILE_STATES = ("pending", "running", "done", "failed")
#: Fields of a job submission besides its files or folder.
OPTION_FIELDS = ("model", "channels", "segmentation")
#: Columns of the CSV export that come before the per-class probabilities.
CSV_HEAD = ("file", "state", "duration_s", "sample_rate", "channels", "label", "confidence")
#: Columns of the CSV export that come after the per-class probabilities.
CSV_TAIL = ("error", "error_code", "processed_at", "model_version")


def invalid(field: str, message: str) -> APIError:
    """A 422 error about one request field."""
    return APIError(f"{field}: {message}", status=422, details={"field": field})


def _int(args: Mapping[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(field)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid(field, f"must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise invalid(field, f"must be between {lo} and {hi}")
    return value


def _choice(args: Mapping[str, Any], field: str, choices: tuple[str, ...]) -> str | None:
    raw = args.get(field)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise invalid(field, f"must be one of {', '.join(choices)}")
    return raw


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOptions:
    """Per-job options shared by uploads and folder jobs."""

    model: str | None = None
    channels: str = CHANNEL_MODES[0]
    segmentation: str = SEGMENTATIONS[0]

    def as_options(self) -> dict:
        """The job's ``options`` column."""
        return {"channels": self.channels, "segmentation": self.segmentation}


@dataclass(frozen=True)
class FolderRequest:
    """A job over a folder that already lies on the server."""

    folder: str
    recursive: bool
    pattern: str | None
    options: JobOptions


def parse_job_options(data: Mapping[str, Any]) -> JobOptions:
    """``model``, ``channels`` (mix|split) and ``segmentation`` (vad|fixed|none) of a form or
    JSON body; the analysis options are checked by :func:`api.jobs.analysis_options`."""
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise invalid("model", "must be a non-empty string")
    raw = {name: data.get(name) for name in ("channels", "segmentation")}
    for name, value in raw.items():
        if value is not None and not isinstance(value, str):
            raise invalid(name, "must be a string")
    try:
        analysis = analysis_options(raw)
    except InvalidOptionsError as exc:
        field = next(name for name in raw if str(exc).startswith(name))
        raise invalid(field, str(exc).removeprefix(field).strip()) from None
    return JobOptions(
        model=model.strip() if model else None,
        channels=analysis.channels,
        segmentation=analysis.segmentation,
    )


def parse_folder_request(body: Any) -> FolderRequest:
    """Validate ``{"folder": ..., "recursive": true, "pattern": "*.wav"}``."""
    if not isinstance(body, dict):
        raise APIError("the JSON body must be an object", status=400)
    unknown = set(body) - {"folder", "recursive", "pattern", *OPTION_FIELDS}
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    folder = body.get("folder")
    if not isinstance(folder, str) or not folder.strip():
        raise invalid("folder", "must be a non-empty string")
    recursive = body.get("recursive", True)
    if not isinstance(recursive, bool):
        raise invalid("recursive", "must be true or false")
    pattern = body.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern or "/" in pattern or "\\" in pattern:
            raise invalid("pattern", "must be a file name pattern such as *.wav (no folders)")
    return FolderRequest(folder.strip(), recursive, pattern, parse_job_options(body))


@dataclass(frozen=True)
class PageQuery:
    """Page-number pagination."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def parse_job_list(args: Mapping[str, Any]) -> tuple[PageQuery, str | None]:
    """``page``, ``size`` and ``state`` of ``GET /jobs``."""
    page = PageQuery(_int(args, "page", 1, 1, 1_000_000), _int(args, "size", 50, 1, 500))
    return page, _choice(args, "state", JOB_STATES)


@dataclass(frozen=True)
class ResultQuery:
    """Cursor pagination and filters of ``GET /jobs/{id}/results``."""

    cursor: int | None
    limit: int
    label: str | None
    min_confidence: float | None
    state: str | None

    def as_args(self, cursor: int) -> dict:
        """The query string of the page that follows ``cursor``."""
        args = {"cursor": cursor, "limit": self.limit, "label": self.label}
        args |= {"min_confidence": self.min_confidence, "state": self.state}
        return {k: v for k, v in args.items() if v is not None}


def parse_result_query(args: Mapping[str, Any]) -> ResultQuery:
    """``cursor``, ``limit``, ``label``, ``min_confidence`` and ``state``."""
    cursor = _int(args, "cursor", 0, 0, 2**62) or None
    raw = args.get("min_confidence")
    min_conf = None
    if raw not in (None, ""):
        try:
            min_conf = float(raw)
        except (TypeError, ValueError):
            raise invalid("min_confidence", f"must be a number, got {raw!r}") from None
        if not 0.0 <= min_conf <= 1.0:
            raise invalid("min_confidence", "must be between 0 and 1")
    label = args.get("label") or None
    state = _choice(args, "state", FILE_STATES)
    return ResultQuery(cursor, _int(args, "limit", 100, 1, 1000), label, min_conf, state)


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


def progress(state: str, counts: Mapping[str, int], started_at, now: datetime) -> dict:
    """``percent``, ``files_per_second`` and ``eta_s`` from file counts."""
    total = counts.get("total", 0)
    finished = counts.get("done", 0) + counts.get("failed", 0)
    terminal = state not in ("queued", "running")
    percent = 100.0 if terminal and not total else (100.0 * finished / total if total else 0.0)
    rate = eta = None
    elapsed = _seconds_since(started_at, now)
    if state == "running" and elapsed and finished:
        rate = finished / elapsed
        eta = (total - finished) / rate if total >= finished else None
    return {
        "percent": round(percent, 2),
        "files_per_second": None if rate is None else round(rate, 3),
        "eta_s": None if eta is None or not math.isfinite(eta) else round(eta, 1),
    }


def result_row(row: Any) -> dict:
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
        "probabilities": row.probabilities or {},
        "attempts": row.attempts,
        "error": row.error,
        "error_code": row.error_code,
        "processed_at": iso(row.processed_at),
        "model_version": row.model_version,
        "segment_count": row.segment_count,
        "summary": row.summary,
    }


def csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """CSV columns: file facts, one ``p_<label>`` per class, then errors and provenance."""
    return [*CSV_HEAD, *(f"p_{label}" for label in labels), *CSV_TAIL]


def csv_row(row: Any, labels: tuple[str, ...] | list[str]) -> list:
    """One CSV line for a file result (missing probabilities are left empty)."""
    probs = row.probabilities or {}
    head = [row.rel_path, row.state, row.duration_s, row.sample_rate, row.channels]
    head += [row.label, row.confidence]
    tail = [row.error, row.error_code, iso(row.processed_at), row.model_version]
    return [*head, *(probs.get(label, "") for label in labels), *tail]


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
