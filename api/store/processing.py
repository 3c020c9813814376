"""The worker's changes of job and file state: list a job's files, claim and release files,
record results, finish jobs, and sweep up after lost tasks.

The API's side (create, read, cancel, delete) is :mod:`api.store.jobs`. Each function takes an open
session and never commits (``api.store.db.session_scope`` does). State changes are single
``UPDATE ... WHERE <expected state>`` statements, so they are safe when a task is delivered
twice or two workers race: the loser simply changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from api.store.db import insert_new
from api.store.tables import (
    ACTIVE_JOB_STATES,
    UNFINISHED_FILE_STATES,
    File,
    FileState,
    Job,
    JobState,
    Segment,
    utcnow,
)
from api.store.workers import file_lost, gone

if TYPE_CHECKING:  # core.predict pulls in the audio stack, which the API does not need here
    from core.predict import FilePrediction

#: ``error_code`` of a file the sweep gave up on.
GAVE_UP = "gave_up"


# --- enumeration (worker) ----------------------------------------------------------------------


def claim_enumeration(
    session: Session,
    job_id: str,
    *,
    worker_id: str,
    lease_s: float,
    max_attempts: int,
    worker_timeout_s: float,
) -> Job | None:
    """Count one enumeration attempt of an active, un-enumerated job that no live task holds,
    for the task ``worker_id``; None when there is none."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state.in_(ACTIVE_JOB_STATES),
            Job.enumerated.is_(False),
            Job.attempts < max_attempts,
            or_(
                Job.claimed_by.is_(None),
                Job.lease_expires_at < now,
                gone(Job.claimed_by, timeout_s=worker_timeout_s),
            ),
        )
        .values(
            attempts=Job.attempts + 1,
            claimed_by=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    job = session.get(Job, job_id)
    session.refresh(job)
    return job


def release_enumeration(session: Session, job_id: str, worker_id: str) -> bool:
    """Give back an enumeration that ``worker_id`` could not finish for a passing reason (the
    database was locked or full): the attempt not counted, and the sweep sends it again."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker_id, Job.enumerated.is_(False))
        .values(attempts=Job.attempts - 1, claimed_by=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def insert_files(
    session: Session, job_id: str, entries: Sequence[tuple[str, str]], *, lease_until: datetime
) -> list[int]:
    """Insert ``(rel_path, path)`` rows that are not there yet; returns the new ids, sorted."""
    rows = [
        {
            "job_id": job_id,
            "rel_path": rel,
            "path": path,
            "state": FileState.PENDING,
            "attempts": 0,
            "lease_expires_at": lease_until,
        }
        for rel, path in entries
    ]
    return _insert_new(session, rows)


def unstarted_files(session: Session, job_id: str, rel_paths: Sequence[str]) -> list[int]:
    """Ids of the job's files among ``rel_paths`` that are pending, unclaimed and never
    attempted (an interrupted listing may have committed them without enqueueing them)."""
    if not rel_paths:
        return []
    ids = session.scalars(
        select(File.id).where(
            File.job_id == job_id,
            File.rel_path.in_(rel_paths),
            File.state == FileState.PENDING,
            File.claimed_by.is_(None),
            File.attempts == 0,
        )
    ).all()
    return sorted(ids)


def insert_failed_files(
    session: Session, job_id: str, entries: Sequence[tuple[str, str, str, str]]
) -> list[int]:
    """Insert ``(rel_path, path, error, error_code)`` rows, already failed, that are not there
    yet (an upload's unreadable archive: it fails alone, as a file of the job)."""
    now = utcnow()
    rows = [
        {
            "job_id": job_id,
            "rel_path": rel,
            "path": path,
            "state": FileState.FAILED,
            "attempts": 0,
            "error": error,
            "error_code": code,
            "processed_at": now,
        }
        for rel, path, error, code in entries
    ]
    return _insert_new(session, rows)


def _insert_new(session: Session, rows: list[dict]) -> list[int]:
    """Insert file rows, skipping any whose (job, rel_path) exists; returns new ids, sorted."""
    return sorted(insert_new(session, File, rows, ["job_id", "rel_path"]))


def count_files(session: Session, job_id: str) -> int:
    """How many file rows the job has."""
    return session.scalar(select(func.count()).where(File.job_id == job_id)) or 0


def finish_enumeration(session: Session, job_id: str) -> bool:
    """Record that every file of the job is listed and enqueued (a job cannot finish before)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES))
        .values(enumerated=True, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def fail_job(session: Session, job_id: str, error: str) -> bool:
    """Mark an active job failed with a job-level ``error`` (e.g. an unreadable folder)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES))
        .values(state=JobState.FAILED, error=error, finished_at=utcnow(), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# --- processing (worker) -----------------------------------------------------------------------


def active_job(session: Session, job_id: str) -> Job | None:
    """The job if it is queued or running, else None (cancelled, finished or deleted)."""
    job = session.get(Job, job_id)
    return job if job is not None and job.state in ACTIVE_JOB_STATES else None


def mark_job_running(session: Session, job_id: str, model_version: str | None) -> bool:
    """queued -> running, with ``started_at`` and the model version (only the first chunk)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(state=JobState.RUNNING, started_at=utcnow(), model_version=model_version)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def extend_pending_leases(
    session: Session,
    job_id: str,
    file_ids: Sequence[int],
    *,
    worker_id: str,
    lease_until: datetime,
) -> None:
    """Hold a chunk's still-pending files for the task ``worker_id`` until ``lease_until``, so
    the sweep leaves them alone while the task lives."""
    session.execute(
        update(File)
        .where(File.job_id == job_id, File.id.in_(file_ids), File.state == FileState.PENDING)
        .values(claimed_by=worker_id, lease_expires_at=lease_until)
        .execution_options(synchronize_session=False)
    )


def claim_file(
    session: Session,
    job_id: str,
    file_id: int,
    *,
    worker_id: str,
    lease_s: float,
    max_attempts: int,
    worker_timeout_s: float,
) -> str | None:
    """Mark a file running for the task ``worker_id`` (one more attempt, a fresh lease);
    returns its path, or None.

    None when the file is done or failed, held by another live task whose lease is still
    valid, out of attempts, or its job is no longer active.
    """
    now = utcnow()
    return session.scalar(
        update(File)
        .where(File.id == file_id, *_claimable(job_id, now, max_attempts, worker_timeout_s))
        .values(
            state=FileState.RUNNING,
            attempts=File.attempts + 1,
            claimed_by=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        .returning(File.path)
        .execution_options(synchronize_session=False)
    )


def claim_files(
    session: Session,
    job_id: str,
    file_ids: Sequence[int],
    *,
    worker_id: str,
    lease_until: datetime,
    max_attempts: int,
    worker_timeout_s: float,
    first_attempt_only: bool = False,
) -> list[tuple[int, str]]:
    """:func:`claim_file` for many files in one ``UPDATE``; returns ``(id, path)`` of the
    files claimed, by id (lease until ``lease_until``, which :func:`release_files` checks).

    ``first_attempt_only``: claim only files never attempted, so a worker dying during a chunk
    costs an attempt of no file that an earlier crash made suspect.
    """
    if not file_ids:
        return []
    conditions = _claimable(job_id, utcnow(), max_attempts, worker_timeout_s)
    if first_attempt_only:
        conditions.append(File.attempts == 0)
    rows = session.execute(
        update(File)
        .where(File.id.in_(file_ids), *conditions)
        .values(
            state=FileState.RUNNING,
            attempts=File.attempts + 1,
            claimed_by=worker_id,
            lease_expires_at=lease_until,
        )
        .returning(File.id, File.path)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((file_id, path) for file_id, path in rows)


def release_files(
    session: Session, file_ids: Sequence[int], *, lease_until: datetime, lease_s: float
) -> list[int]:
    """Give back files claimed by :func:`claim_files` with ``lease_until`` and never started:
    pending again, the attempt not counted, a fresh lease; returns the ids released, by id.

    A file no longer held under that lease (finished, or taken over after it expired) is left
    alone.
    """
    if not file_ids:
        return []
    rows = session.scalars(
        update(File)
        .where(
            File.id.in_(file_ids),
            File.state == FileState.RUNNING,
            File.lease_expires_at == lease_until,
        )
        .values(
            state=FileState.PENDING,
            attempts=File.attempts - 1,
            claimed_by=None,
            lease_expires_at=utcnow() + timedelta(seconds=lease_s),
        )
        .returning(File.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(rows)


def _claimable(job_id: str, now: datetime, max_attempts: int, worker_timeout_s: float) -> list:
    """WHERE terms of a file of ``job_id`` that a worker may take now."""
    return [
        File.job_id == job_id,
        or_(File.state == FileState.PENDING, file_lost(now, timeout_s=worker_timeout_s)),
        File.attempts < max_attempts,
        exists().where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES)),
    ]


def record_result(
    session: Session, file_id: int, prediction: FilePrediction, model_version: str | None
) -> bool:
    """Store a file's prediction (or its error) with its segments and summary.

    The first result wins: see :func:`record_results`. A re-run, or a redelivered chunk,
    changes nothing and returns False.
    """
    return bool(record_results(session, [(file_id, prediction)], model_version))


def record_results(
    session: Session,
    results: Sequence[tuple[int, FilePrediction]],
    model_version: str | None,
    processing_s: Mapping[int, float] | None = None,
) -> list[int]:
    """Store many files' predictions (or errors) with their segments and summaries; returns the
    ids of the files written, by id.

    The first result wins: a file row is updated only while the file is unfinished, and only
    then are its segments written (any left from before deleted first), all in the caller's
    transaction. A few statements for the whole batch, whatever its size. ``processing_s``:
    seconds spent on each file (by id), for the metrics.
    """
    by_id: dict[int, FilePrediction] = {}
    for file_id, prediction in results:
        by_id.setdefault(file_id, prediction)
    if not by_id:
        return []
    # Locks the rows (PostgreSQL; SQLite holds the write lock already), so no other
    # transaction finishes these files or writes their segments until this one ends.
    job_ids = dict(
        session.execute(
            select(File.id, File.job_id)
            .where(File.id.in_(by_id), File.state.in_(UNFINISHED_FILE_STATES))
            .with_for_update()
        ).all()
    )
    winners = sorted(job_ids)
    if not winners:
        return []
    files = File.__table__
    now = utcnow()
    rows, segment_rows = [], []
    for file_id in winners:
        row, segments = _result_row(by_id[file_id])
        seconds = (processing_s or {}).get(file_id)
        rows.append(
            {
                "b_id": file_id,
                **row,
                "processed_at": now,
                "model_version": model_version,
                "processing_s": seconds,
            }
        )
        segment_rows += [
            {"file_id": file_id, "job_id": job_ids[file_id], **seg} for seg in segments
        ]
    connection = session.connection()
    unfinished = or_(*(files.c.state == state for state in UNFINISHED_FILE_STATES))
    connection.execute(update(files).where(files.c.id == bindparam("b_id"), unfinished), rows)
    connection.execute(delete(Segment.__table__).where(Segment.file_id.in_(winners)))
    if segment_rows:
        connection.execute(insert(Segment.__table__), segment_rows)
    return winners


def _result_row(prediction: FilePrediction) -> tuple[dict, list[dict]]:
    """The ``files`` columns of a result, and its segments' ``segments`` columns."""
    ok = prediction.error is None
    segments = _unique_segments(prediction.segments) if ok else []
    row = {
        "state": FileState.DONE if ok else FileState.FAILED,
        "lease_expires_at": None,
        "duration_s": prediction.duration_s,
        "sample_rate": prediction.sample_rate,
        "channels": prediction.channels,
        "label": prediction.label,
        "confidence": prediction.confidence,
        "probabilities": prediction.probabilities if ok else None,
        "summary": prediction.summary if ok else None,
        "segment_count": len(segments) if ok else None,
        "error": prediction.error,
        "error_code": prediction.error_code,
        "ood": getattr(prediction, "ood", None) if ok else None,
    }
    segment_rows = [
        {
            "channel": s.channel,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "label": s.label,
            "confidence": s.confidence,
            "probabilities": s.probabilities,
            "ood": getattr(s, "ood", None),
        }
        for s in segments
    ]
    return row, segment_rows


def _unique_segments(segments: Sequence) -> list:
    """``segments`` in (channel, start_s) order, the first of any with the same key kept."""
    seen: dict[tuple[int, float], Any] = {}
    for seg in segments:
        seen.setdefault((int(seg.channel), float(seg.start_s)), seg)
    return [seen[key] for key in sorted(seen)]


def fail_file(session: Session, file_id: int, error: str, error_code: str) -> bool:
    """Mark an unfinished file failed with ``error`` (an internal error, not bad audio)."""
    return _settle(session, file_id, state=FileState.FAILED, error=error, error_code=error_code)


def _settle(session: Session, file_id: int, **values) -> bool:
    result = session.execute(
        update(File)
        .where(File.id == file_id, File.state.in_(UNFINISHED_FILE_STATES))
        .values(processed_at=utcnow(), lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def try_finish_job(session: Session, job_id: str) -> bool:
    """Finish the job if it is enumerated and no file is left; True only for the one call that
    did it (a single conditional UPDATE, so concurrent chunks cannot both finish it)."""
    unfinished = exists().where(File.job_id == job_id, File.state.in_(UNFINISHED_FILE_STATES))
    any_failed = exists().where(File.job_id == job_id, File.state == FileState.FAILED)
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state.in_(ACTIVE_JOB_STATES),
            Job.enumerated.is_(True),
            ~unfinished,
        )
        .values(
            state=case(
                (any_failed, JobState.COMPLETED_WITH_ERRORS.value),
                else_=JobState.SUCCEEDED.value,
            ),
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# --- sweep (worker) ----------------------------------------------------------------------------


def give_up_files(session: Session, *, max_attempts: int, worker_timeout_s: float) -> set[str]:
    """Fail unfinished files whose lease expired, or whose task is gone, after
    ``max_attempts`` attempts; returns their job ids."""
    now = utcnow()
    message = (
        literal("gave up after ")
        + cast(File.attempts, String)
        + literal(" attempts (the file crashed or timed out the worker)")
    )
    rows = session.scalars(
        update(File)
        .where(
            File.state.in_(UNFINISHED_FILE_STATES),
            or_(File.lease_expires_at < now, file_lost(now, timeout_s=worker_timeout_s)),
            File.attempts >= max_attempts,
            _job_is_active(),
        )
        .values(
            state=FileState.FAILED,
            error=message,
            error_code=GAVE_UP,
            processed_at=now,
            lease_expires_at=None,
        )
        .returning(File.job_id)
        .execution_options(synchronize_session=False)
    )
    return set(rows)


def expired_files(
    session: Session,
    *,
    lease_s: float,
    max_attempts: int,
    worker_timeout_s: float,
    include_pending: bool,
    messages_lost: bool = False,
) -> dict[str, list[int]]:
    """Reset running files past their lease or whose task is gone (and, if asked, pending ones
    past their lease) to pending with a new lease; returns ``{job_id: [file ids]}`` to enqueue
    again.

    ``messages_lost``: the broker lost its messages, so every pending file is taken, whatever
    its lease.
    """
    now = utcnow()
    expired = or_(File.lease_expires_at < now, File.lease_expires_at.is_(None))
    stuck = and_(file_lost(now, timeout_s=worker_timeout_s), File.attempts < max_attempts)
    if messages_lost:
        stuck = or_(stuck, File.state == FileState.PENDING)
    elif include_pending:
        stuck = or_(stuck, and_(File.state == FileState.PENDING, expired))
    rows = session.execute(
        update(File)
        .where(stuck, _job_is_active())
        .values(
            state=FileState.PENDING,
            claimed_by=None,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        .returning(File.job_id, File.id)
        .execution_options(synchronize_session=False)
    ).all()
    by_job: dict[str, list[int]] = {}
    for job_id, file_id in rows:
        by_job.setdefault(job_id, []).append(file_id)
    return {job_id: sorted(ids) for job_id, ids in by_job.items()}


def stalled_enumerations(
    session: Session,
    *,
    lease_s: float,
    max_attempts: int,
    worker_timeout_s: float,
    unclaimed_after_s: float,
    messages_lost: bool = False,
    gave_up: list[str] | None = None,
) -> list[str]:
    """Jobs whose enumeration was lost: its lease expired, its task is gone, or nobody claimed
    it within ``unclaimed_after_s`` of its creation (or at all, when ``messages_lost``).

    Jobs out of attempts are failed (their ids appended to ``gave_up`` when given, for their
    webhook events); the others get a fresh lease, no claimer, and are returned, to be enqueued
    again.
    """
    now = utcnow()
    unclaimed = Job.claimed_by.is_(None)
    if not messages_lost:
        unclaimed = and_(
            unclaimed,
            Job.lease_expires_at.is_(None),
            Job.created_at < now - timedelta(seconds=unclaimed_after_s),
        )
    stalled = and_(
        Job.state.in_(ACTIVE_JOB_STATES),
        Job.enumerated.is_(False),
        or_(
            Job.lease_expires_at < now,
            and_(Job.claimed_by.is_not(None), gone(Job.claimed_by, timeout_s=worker_timeout_s)),
            unclaimed,
        ),
    )
    failed = session.scalars(
        update(Job)
        .where(stalled, Job.attempts >= max_attempts)
        .values(
            state=JobState.FAILED,
            error=f"listing the files gave up after {max_attempts} attempts",
            finished_at=now,
            lease_expires_at=None,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).all()
    if gave_up is not None:
        gave_up.extend(failed)
    return list(
        session.scalars(
            update(Job)
            .where(stalled)
            .values(claimed_by=None, lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )


def _job_is_active():
    return exists().where(Job.id == File.job_id, Job.state.in_(ACTIVE_JOB_STATES))
