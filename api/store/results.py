"""Reading a job's results: pages of per-file results and keyset batches for the CSV export.

Each function takes an open session and never commits (the caller's scope does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
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


def result_page(
    session: Session,
    job_id: str,
    *,
    after_id: int | None,
    limit: int,
    label: str | None = None,
    min_confidence: float | None = None,
    state: str | None = None,
) -> tuple[list[File], int | None]:
    """One page of a job's files in id order, filtered; returns (rows, next cursor or None)."""
    stmt = select(File).where(File.job_id == job_id)
    if after_id is not None:
        stmt = stmt.where(File.id > after_id)
    if label is not None:
        stmt = stmt.where(File.label == label)
    if min_confidence is not None:
        stmt = stmt.where(File.confidence >= min_confidence)
    if state is not None:
        stmt = stmt.where(File.state == state)
    rows = list(session.scalars(stmt.order_by(File.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


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
