"""The retention task's work: delete the audio of jobs that ended ``AER_RETENTION_DAYS`` ago,
the jobs and results that ended ``AER_RESULTS_RETENTION_DAYS`` ago, and the extracted zips of
ended jobs; each deletion is recorded in ``purges``.

Upload folders are found in the storage (:mod:`api.store.storage`), not in the database, so a
folder whose job is gone (deleted while a worker was still extracting, or left by a failed
request) is purged too once it is as old as the audio retention.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from api.store import retention
from api.store.db import session_scope
from api.store.settings import Settings
from api.store.storage import Storage, open_storage
from api.store.tables import utcnow
from api.store.uploads import UPLOADS, upload_key
from worker.uploads import remove_job_extractions

log = logging.getLogger(__name__)


def run_purge(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Apply the retention settings once; returns how many jobs each kind of purge touched."""
    now = now or utcnow()
    storage = open_storage(settings)
    counts = {"results": 0, "audio": 0, "extracted": 0}
    if settings.results_retention_days:
        cutoff = now - _days(settings.results_retention_days)
        counts["results"] = _purge_results(settings, storage, cutoff)
    folders = storage.folders(UPLOADS)
    if folders:
        with session_scope(settings) as session:
            ends = retention.job_ends(session, folders)
        if settings.retention_days:
            cutoff = now - _days(settings.retention_days)
            counts["audio"] = _purge_audio(settings, storage, folders, ends, cutoff)
        if not settings.keep_extracted:
            counts["extracted"] = _purge_extractions(settings, folders, ends)
    if any(counts.values()):
        log.warning("retention: %s", counts)
    return counts


def _days(days: float) -> timedelta:
    return timedelta(days=days)


def _purge_results(settings: Settings, storage: Storage, cutoff: datetime) -> int:
    jobs = files = size = 0
    while True:
        with session_scope(settings) as session:
            ids = retention.ended_before(session, cutoff)
            if not ids:
                break
            files += retention.delete_jobs(session, ids)
        for job_id in ids:  # after the commit: a job is never left without its audio
            size += storage.delete_folder(upload_key(job_id))
        jobs += len(ids)
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(
                session, "results", jobs=jobs, files=files, size=size, cutoff=cutoff
            )
    return jobs


def _purge_audio(
    settings: Settings,
    storage: Storage,
    folders: list[str],
    ends: dict[str, datetime | None],
    cutoff: datetime,
) -> int:
    jobs = files = size = 0
    for job_id in folders:
        if job_id in ends:
            ended = ends[job_id]
            due = ended is not None and ended < cutoff
        else:  # no job: an orphan, purged by its age
            modified = storage.modified(upload_key(job_id))
            due = modified is not None and modified < cutoff
        if not due:
            continue
        files += sum(1 for _ in storage.list(upload_key(job_id)))
        size += storage.delete_folder(upload_key(job_id))
        jobs += 1
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(
                session, "audio", jobs=jobs, files=files, size=size, cutoff=cutoff
            )
    return jobs


def _purge_extractions(
    settings: Settings, folders: list[str], ends: dict[str, datetime | None]
) -> int:
    """Extracted zips of ended jobs that their worker did not delete (it died first, or the
    sweep ended the job)."""
    jobs = size = 0
    for job_id in folders:
        if ends.get(job_id) is None:
            continue
        freed = remove_job_extractions(settings, job_id)
        if freed:
            size += freed
            jobs += 1
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(session, "extracted", jobs=jobs, files=0, size=size)
    return jobs
