"""A job's results as a table: one row per file or one row per segment, with the columns of
the CSV download. The CSV, JSON Lines and Parquet downloads and the bucket exports all read
their rows from :func:`result_table`, so every format holds the same values.

Cells are plain values: text, numbers, booleans and None (an empty cell). Rows are read in
keyset batches, the read transaction ending between two batches, so memory stays flat and
writers never wait on an export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from api.store import jobs, results
from api.store.resultview import ResultView

#: Columns of the per-file table that come before the per-class probabilities.
CSV_HEAD = ("file", "state", "duration_s", "sample_rate", "channels", "label", "confidence")
#: Columns of the per-file table that come after the per-class probabilities.
CSV_TAIL = ("error", "error_code", "processed_at", "model_version")
#: Timeline columns at the end of the per-file table (from the file's segment summary).
CSV_TIMELINE = ("uncertain", "segment_count", "dominant", "speech_s", "silence_s")
#: Columns of the per-segment table before the probabilities (``uncertain`` comes after them).
SEGMENT_CSV_HEAD = (
    "file", "file_id", "channel", "channel_name", "start_s", "end_s", "label", "confidence"
)  # fmt: skip
#: One row per file, or one row per classified segment.
GRANULARITIES = ("file", "segment")
#: Rows read per query (memory is bounded by these).
FILE_BATCH = 1000
SEGMENT_BATCH = 2000

#: The type of each column's cells (``p_<label>`` columns are ``float``; the rest ``str``).
_KINDS = {
    "duration_s": "float",
    "sample_rate": "int",
    "channels": "int",
    "confidence": "float",
    "uncertain": "bool",
    "segment_count": "int",
    "speech_s": "float",
    "silence_s": "float",
    "ood": "float",
    "file_id": "int",
    "channel": "int",
    "start_s": "float",
    "end_s": "float",
}


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite returns naive datetimes; they are UTC by convention)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-file columns: file facts, one ``p_<label>`` per class, errors and provenance, then
    the timeline columns."""
    probabilities = (f"p_{label}" for label in labels)
    return [*CSV_HEAD, *probabilities, *CSV_TAIL, *CSV_TIMELINE, "ood", "corrected_label"]


def csv_row(row: Any, view: ResultView) -> list:
    """One file's row (missing probabilities and summary values are None)."""
    probs = row.probabilities or {}
    summary = row.summary or {}
    head = [row.rel_path, row.state, view.s(row.duration_s), row.sample_rate, row.channels]
    head += [row.label, view.p(row.confidence)]
    tail = [row.error, row.error_code, iso(row.processed_at), row.model_version]
    timeline = [view.uncertain(row.confidence, row.ood), row.segment_count]
    timeline += [summary.get("dominant"), view.s(summary.get("speech_s"))]
    timeline += [view.s(summary.get("silence_s"))]
    probabilities = (view.p(probs.get(label)) for label in view.labels)
    return [*head, *probabilities, *tail, *timeline, view.p(row.ood), row.corrected_label]


def segment_csv_header(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Per-segment columns: where the segment is, its label, one ``p_<label>`` per class, then
    ``uncertain``."""
    probabilities = (f"p_{label}" for label in labels)
    return [*SEGMENT_CSV_HEAD, *probabilities, "uncertain", "ood", "corrected_label"]


def segment_csv_row(rel_path: str, segment: Any, view: ResultView) -> list:
    """One segment's row."""
    probs = segment.probabilities or {}
    head = [rel_path, segment.file_id, segment.channel, view.channel_name(segment.channel)]
    head += [view.s(segment.start_s), view.s(segment.end_s), segment.label]
    head += [view.p(segment.confidence)]
    uncertain = view.uncertain(segment.confidence, segment.ood)
    probabilities = (view.p(probs.get(label)) for label in view.labels)
    return [*head, *probabilities, uncertain, view.p(segment.ood), segment.corrected_label]


def column_kinds(header: list[str]) -> list[str]:
    """The cell type of each column of ``header``: ``str``, ``int``, ``float`` or ``bool``."""
    return ["float" if name.startswith("p_") else _KINDS.get(name, "str") for name in header]


@dataclass
class Table:
    """A table's column names and its rows, batch by batch (read lazily, once)."""

    header: list[str]
    batches: Iterator[list[list]]

    @property
    def kinds(self) -> list[str]:
        """The cell type of each column (see :func:`column_kinds`)."""
        return column_kinds(self.header)


def result_table(
    session: Callable[[], Session], job_id: str, view: ResultView, granularity: str = "file"
) -> Table:
    """The results of job ``job_id`` as a :class:`Table`: one row per file (in file id order)
    or per segment (``granularity="segment"``, in segment id order).

    ``session`` gives the session to read with, called when the rows are first read: an answer
    that streams them reads through the session of that moment, not of the request that made
    the table (closed by then)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "segment":
        return Table(segment_csv_header(view.labels), _segment_batches(session, job_id, view))
    return Table(csv_header(view.labels), _file_batches(session, job_id, view))


def _file_batches(
    get_session: Callable[[], Session], job_id: str, view: ResultView
) -> Iterator[list[list]]:
    session, last = get_session(), 0
    while True:
        rows = results.file_batch(session, job_id, after_id=last, limit=FILE_BATCH)
        session.commit()  # end the read transaction between batches: writers need not wait
        if not rows:
            return
        last = rows[-1].id
        yield [csv_row(row, view) for row in rows]


def _segment_batches(
    get_session: Callable[[], Session], job_id: str, view: ResultView
) -> Iterator[list[list]]:
    session, last = get_session(), None
    while True:
        page = jobs.job_segments(session, job_id, after_id=last, limit=SEGMENT_BATCH)
        if not page:
            session.commit()
            return
        rows = [segment_csv_row(rel_path, segment, view) for rel_path, segment in page]
        last = page[-1][1].id
        session.commit()  # after reading the rows: the commit expires the segments
        yield rows
