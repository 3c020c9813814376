"""Request validation and the JSON shapes of the API.

Parsers take plain mappings (``request.args``, a JSON body, form fields) and return frozen
dataclasses or raise a 422 :class:`~api.errors.APIError` naming the bad field; serializers turn
database rows into JSON-safe dicts. Nothing here touches the database or the request.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
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
#: Timeline columns at the end of the per-file CSV (from the file's segment summary).
CSV_TIMELINE = ("uncertain", "segment_count", "dominant", "speech_s", "silence_s")
#: Columns of the per-segment CSV before the probabilities (``uncertain`` comes last).
SEGMENT_CSV_HEAD = (
    "file", "file_id", "channel", "channel_name", "start_s", "end_s", "label", "confidence"
)  # fmt: skip
#: ``granularity`` of ``GET /jobs/{id}/results.csv``: one row per file or per segment.
GRANULARITIES = ("file", "segment")


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
    uncertain_below: float | None = None

    def as_args(self, cursor: int) -> dict:
        """The query string of the page that follows ``cursor``."""
        args = {"cursor": cursor, "limit": self.limit, "label": self.label}
        args |= {"min_confidence": self.min_confidence, "state": self.state}
        args |= {"uncertain_below": self.uncertain_below}
        return {k: v for k, v in args.items() if v is not None}


def _fraction(args: Mapping[str, Any], field: str) -> float | None:
    raw = args.get(field)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise invalid(field, f"must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise invalid(field, "must be between 0 and 1")
    return value


def parse_result_query(args: Mapping[str, Any]) -> ResultQuery:
    """``cursor``, ``limit``, ``label``, ``min_confidence``, ``state`` and ``uncertain_below``."""
    cursor = _int(args, "cursor", 0, 0, 2**62) or None
    min_conf = _fraction(args, "min_confidence")
    label = args.get("label") or None
    state = _choice(args, "state", FILE_STATES)
    limit = _int(args, "limit", 100, 1, 1000)
    return ResultQuery(cursor, limit, label, min_conf, state, parse_uncertain_below(args))


def parse_uncertain_below(args: Mapping[str, Any]) -> float | None:
    """``uncertain_below`` (0..1): flag results less confident than this; None when absent."""
    return _fraction(args, "uncertain_below")


def parse_granularity(args: Mapping[str, Any]) -> str:
    """``granularity`` of the CSV export: ``file`` (default) or ``segment``."""
    return _choice(args, "granularity", GRANULARITIES) or GRANULARITIES[0]


@dataclass(frozen=True)
class SegmentQuery:
    """Cursor pagination of ``GET /jobs/{id}/files/{file_id}/segments``."""

    cursor: int | None
    limit: int
    uncertain_below: float | None

    def as_args(self, cursor: int) -> dict:
        """The query string of the page that follows ``cursor``."""
        args = {"cursor": cursor, "limit": self.limit, "uncertain_below": self.uncertain_below}
        return {k: v for k, v in args.items() if v is not None}


def parse_segment_query(args: Mapping[str, Any]) -> SegmentQuery:
    """``cursor`` (a segment id), ``limit`` (1..1000, default 200) and ``uncertain_below``."""
    cursor = _int(args, "cursor", 0, 0, 2**62) or None
    return SegmentQuery(cursor, _int(args, "limit", 200, 1, 1000), parse_uncertain_below(args))


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


@dataclass(frozen=True)
class ResultView:
    """How one job's stored results are presented.

    ``labels`` are the model's classes in its order (probabilities are listed in that order:
    PostgreSQL's JSONB keeps no key order); ``uncertain_below`` is the confidence under which a
    result is flagged ``uncertain``; ``channel_name`` names a channel index.
    """

    labels: tuple[str, ...]
    uncertain_below: float
    channel_name: Callable[[int], str]

    def uncertain(self, confidence: float | None) -> bool | None:
        """Whether ``confidence`` is under the threshold (None without a result)."""
        return None if confidence is None else confidence < self.uncertain_below

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
        "uncertain": view.uncertain(row.confidence),
        "probabilities": view.ordered(row.probabilities),
        "attempts": row.attempts,
        "error": row.error,
        "error_code": row.error_code,
        "processed_at": iso(row.processed_at),
        "model_version": row.model_version,
        "segment_count": row.segment_count,
        "summary": view.summary(row.summary),
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
        "uncertain": view.uncertain(segment.confidence),
        "probabilities": view.ordered(segment.probabilities),
    }


def csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-file CSV columns: file facts, one ``p_<label>`` per class, errors and provenance,
    then the timeline columns."""
    return [*CSV_HEAD, *(f"p_{label}" for label in labels), *CSV_TAIL, *CSV_TIMELINE]


def csv_row(row: Any, view: ResultView) -> list:
    """One per-file CSV line (missing probabilities and summary values are left empty)."""
    probs = row.probabilities or {}
    summary = row.summary or {}
    head = [row.rel_path, row.state, row.duration_s, row.sample_rate, row.channels]
    head += [row.label, row.confidence]
    tail = [row.error, row.error_code, iso(row.processed_at), row.model_version]
    timeline = [_csv_bool(view.uncertain(row.confidence)), row.segment_count]
    timeline += [summary.get("dominant"), summary.get("speech_s"), summary.get("silence_s")]
    return [*head, *(probs.get(label, "") for label in view.labels), *tail, *timeline]


def segment_csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-segment CSV columns: where the segment is, its label, one ``p_<label>`` per class,
    then ``uncertain``."""
    return [*SEGMENT_CSV_HEAD, *(f"p_{label}" for label in labels), "uncertain"]


def segment_csv_row(rel_path: str, segment: Any, view: ResultView) -> list:
    """One per-segment CSV line."""
    probs = segment.probabilities or {}
    head = [rel_path, segment.file_id, segment.channel, view.channel_name(segment.channel)]
    head += [segment.start_s, segment.end_s, segment.label, segment.confidence]
    uncertain = _csv_bool(view.uncertain(segment.confidence))
    return [*head, *(probs.get(label, "") for label in view.labels), uncertain]


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


def _csv_bool(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
