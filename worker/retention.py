"""The retention task's work: delete the audio of jobs that ended ``AER_RETENTION_DAYS`` ago,
the jobs and results that ended ``AER_RESULTS_RETENTION_DAYS`` ago, and the extracted zips of
ended jobs; each deletion is recorded in ``purges``.

Upload folders are found on disk, not in the database, so a folder whose job is gone (deleted
while a worker was still extracting, or left by a failed request) is purged too once it is as
old as the audio retention.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from api.store import retention
from api.store.db import session_scope
from api.store.settings import Settings
from api.store.tables import utcnow
from api.store.uploads import upload_dir
from worker.sources import remove_extractions

log = logging.getLogger(__name__)


def run_purge(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Apply the retention settings once; returns how many jobs each kind of purge touched."""
    now = now or utcnow()
    counts = {"results": 0, "audio": 0, "extracted": 0}
    if settings.results_retention_days:
        counts["results"] = _purge_results(settings, now - _days(settings.results_retention_days))
    folders = _upload_folders(settings)
    if folders:
        with session_scope(settings) as session:
            ends = retention.job_ends(session, [f.name for f in folders])
        if settings.retention_days:
            cutoff = now - _days(settings.retention_days)
            counts["audio"] = _purge_audio(settings, folders, ends, cutoff)
        if not settings.keep_extracted:
            counts["extracted"] = _purge_extractions(settings, folders, ends)
    if any(counts.values()):
        log.warning("retention: %s", counts)
    return counts


def _days(days: float) -> timedelta:
    return timedelta(days=days)


def _upload_folders(settings: Settings) -> list[Path]:
    root = settings.uploads_dir
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _purge_results(settings: Settings, cutoff: datetime) -> int:
    jobs = files = size = 0
    while True:
        with session_scope(settings) as session:
            ids = retention.ended_before(session, cutoff)
            if not ids:
                break
            files += retention.delete_jobs(session, ids)
        for job_id in ids:  # after the commit: a job is never left without its audio
            size += _remove(upload_dir(settings, job_id))
        jobs += len(ids)
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(
                session, "results", jobs=jobs, files=files, size=size, cutoff=cutoff
            )
    return jobs


def _purge_audio(
    settings: Settings, folders: list[Path], ends: dict[str, datetime | None], cutoff: datetime
) -> int:
    jobs = files = size = 0
    for folder in folders:
        if folder.name in ends:
            ended = ends[folder.name]
            due = ended is not None and ended < cutoff
        else:  # no job: an orphan, purged by its age
            due = datetime.fromtimestamp(folder.stat().st_mtime, cutoff.tzinfo) < cutoff
        if not due:
            continue
        files += sum(1 for p in folder.rglob("*") if p.is_file())
        size += _remove(folder)
        jobs += 1
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(
                session, "audio", jobs=jobs, files=files, size=size, cutoff=cutoff
            )
    return jobs


def _purge_extractions(
    settings: Settings, folders: list[Path], ends: dict[str, datetime | None]
) -> int:
    """Extracted zips of ended jobs that their worker did not delete (it died first, or the
    sweep ended the job)."""
    jobs = size = 0
    for folder in folders:
        if ends.get(folder.name) is None or not folder.is_dir():
            continue
        freed = remove_extractions(folder)
        if freed:
            size += freed
            jobs += 1
    if jobs:
        with session_scope(settings) as session:
            retention.record_purge(session, "extracted", jobs=jobs, files=0, size=size)
    return jobs


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _remove(folder: Path) -> int:
    """Delete ``folder`` if it is there; returns the bytes it held."""
    if not folder.is_dir():
        return 0
    size = _tree_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return size
