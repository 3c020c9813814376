"""Reading a job's results: pages of per-file results and keyset batches for the CSV export.

Each function takes an open session and never commits (the caller's scope does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.tables import File

#: Largest id a file can have (BIGINT); larger ids are unknown files, not errors.
MAX_ID = 2**63 - 1
#: Columns the per-file CSV export reads.
CSV_COLUMNS = (
    File.id,
    File.rel_path,
    File.state,
    File.duration_s,
    File.sample_rate,
    File.channels,
    File.label,
    File.confidence,
    File.probabilities,
    File.error,
    File.error_code,
    File.processed_at,
    File.model_version,
    File.segment_count,
    File.summary,
    File.ood,
    File.corrected_label,
)


class FileNotInJobError(StoreError, LookupError):
    """No file has that id in that job."""

    code = "file_not_found"
    status = 404


#: Orders of :func:`result_page`: file id, or confidence (ascending / descending, ties by id).
RESULT_ORDERS = ("id", "confidence", "-confidence")


def result_page(
    session: Session,
    job_id: str,
    *,
    after_id: int | None,
    limit: int,
    label: str | None = None,
    min_confidence: float | None = None,
    state: str | None = None,
    uncertain_below: float | None = None,
    ood_above: float | None = None,
    order: str = "id",
    after_confidence: float | None = None,
) -> tuple[list[File], int | None]:
    """One keyset page of a job's files, filtered; returns (rows, next cursor id or None).

    ``order="id"`` pages by file id (cursor: ``after_id``). ``"confidence"`` and
    ``"-confidence"`` list only files with a confidence, by (confidence, id) ascending or
    descending; their cursor is the last row's ``(after_confidence, after_id)``. Every page is
    one query that starts after the cursor: no OFFSET, whatever the page.
    ``uncertain_below`` keeps only the files the API flags ``uncertain``: less confident than
    it, or (with ``ood_above``) with audio scored off-domain above ``ood_above``.
    """
    if order not in RESULT_ORDERS:
        raise ValueError(f"order must be one of {RESULT_ORDERS}, got {order!r}")
    stmt = select(File).where(File.job_id == job_id)
    if label is not None:
        stmt = stmt.where(File.label == label)
    if min_confidence is not None:
        stmt = stmt.where(File.confidence >= min_confidence)
    if uncertain_below is not None:
        flagged = File.confidence < uncertain_below
        if ood_above is not None:
            flagged = flagged | (File.ood > ood_above)
        stmt = stmt.where(File.confidence.is_not(None), flagged)
    if state is not None:
        stmt = stmt.where(File.state == state)
    if order == "id":
        if after_id is not None:
            stmt = stmt.where(File.id > after_id)
        stmt = stmt.order_by(File.id)
    else:
        stmt = _by_confidence(stmt, order == "-confidence", after_confidence, after_id)
    rows = list(session.scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def _by_confidence(stmt, descending: bool, after_confidence: float | None, after_id: int | None):
    stmt = stmt.where(File.confidence.is_not(None))
    if after_confidence is not None and after_id is not None:
        key, cursor = tuple_(File.confidence, File.id), tuple_(after_confidence, after_id)
        stmt = stmt.where(key < cursor if descending else key > cursor)
    if descending:
        return stmt.order_by(File.confidence.desc(), File.id.desc())
    return stmt.order_by(File.confidence, File.id)


def label_counts(session: Session, job_id: str) -> dict[str, int]:
    """How many of the job's files got each label (files with a result only), most first."""
    rows = session.execute(
        select(File.label, func.count())
        .where(File.job_id == job_id, File.label.is_not(None))
        .group_by(File.label)
        .order_by(func.count().desc(), File.label)
    ).all()
    return {label: n for label, n in rows}


def file_batch(session: Session, job_id: str, *, after_id: int, limit: int) -> Sequence[Any]:
    """The next ``limit`` files of a job after ``after_id`` (id order), as :data:`CSV_COLUMNS`
    rows; empty at the end."""
    return session.execute(
        select(*CSV_COLUMNS)
        .where(File.job_id == job_id, File.id > after_id)
        .order_by(File.id)
        .limit(limit)
    ).all()


def get_file(session: Session, job_id: str, file_id: int) -> File:
    """File ``file_id`` of job ``job_id``; raises :class:`FileNotInJobError`."""
    file = session.get(File, file_id) if 0 <= file_id <= MAX_ID else None
    if file is None or file.job_id != job_id:
        raise FileNotInJobError(f"job {job_id!r} has no file {file_id}")
    return file


def first_probabilities(session: Session, job_id: str) -> dict[str, float] | None:
    """The probabilities of the job's first file with a result (its labels, in stored order)."""
    return session.scalar(
        select(File.probabilities)
        .where(File.job_id == job_id, File.probabilities.is_not(None))
        .order_by(File.id)
        .limit(1)
    )


def ood_counts(session: Session, job_id: str, above: float | None) -> tuple[int, int]:
    """(files with an out-of-domain score, those scored above ``above``) of a job."""
    scored = func.count(File.ood)
    outside = func.count(File.ood).filter(File.ood > above) if above is not None else None
    columns = (scored, outside) if outside is not None else (scored,)
    row = session.execute(select(*columns).where(File.job_id == job_id)).one()
    return int(row[0]), int(row[1]) if outside is not None else 0
