"""Retention queries: which jobs ended before a cutoff, deleting jobs with their results, and the
``purges`` record of what was deleted. The files on disk are the worker's to delete
(:mod:`worker.retention`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.store.tables import TERMINAL_JOB_STATES, File, Job, Purge, utcnow

#: Jobs deleted per statement while purging results.
PURGE_BATCH = 500


def job_ends(session: Session, job_ids: Collection[str]) -> dict[str, datetime | None]:
    """``{job id: finished_at}`` of those of ``job_ids`` that exist; None while a job is active
    (a job that has ended always has a ``finished_at``)."""
    ends: dict[str, datetime | None] = {}
    ids = list(job_ids)
    for start in range(0, len(ids), PURGE_BATCH):
        rows = session.execute(
            select(Job.id, Job.state, Job.finished_at).where(
                Job.id.in_(ids[start : start + PURGE_BATCH])
            )
        )
        for job_id, state, finished_at in rows:
            ends[job_id] = finished_at if state in TERMINAL_JOB_STATES else None
    return ends


def ended_before(session: Session, cutoff: datetime, *, limit: int = PURGE_BATCH) -> list[str]:
    """Ids of up to ``limit`` jobs that ended before ``cutoff``, oldest first."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.state.in_(TERMINAL_JOB_STATES), Job.finished_at < cutoff)
            .order_by(Job.finished_at)
            .limit(limit)
        )
    )


def delete_jobs(session: Session, job_ids: Collection[str]) -> int:
    """Delete jobs with their files and segments (the foreign keys cascade); returns how many
    file rows went with them."""
    if not job_ids:
        return 0
    files = session.scalar(select(func.count()).where(File.job_id.in_(job_ids))) or 0
    session.execute(
        delete(Job).where(Job.id.in_(job_ids)).execution_options(synchronize_session=False)
    )
    return files


def record_purge(
    session: Session,
    kind: str,
    *,
    jobs: int,
    files: int,
    size: int,
    cutoff: datetime | None = None,
) -> Purge:
    """Add a row to ``purges``: ``kind`` (audio, extracted, results), counts, and the cutoff."""
    purge = Purge(kind=kind, ran_at=utcnow(), cutoff=cutoff, jobs=jobs, files=files, bytes=size)
    session.add(purge)
    session.flush()
    return purge
