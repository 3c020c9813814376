"""What the pages show of a job: its JSON shape (the API's) plus a display name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from api.store.tables import Job
from api.web.serializers import job_json


def job_name(job: Job, first_file: str | None) -> str:
    """The job's ``name`` option; else its folder's name (folder jobs), its bucket prefix
    (``s3`` jobs) or its first file's top folder or name (uploads, URLs); else its id."""
    name = (job.options or {}).get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    if job.source_kind == "folder":
        return PurePath(job.source).name or job.source
    if job.source_kind == "s3":
        return job.source
    if first_file:
        return PurePath(first_file).parts[0]
    return job.id


def job_row(job: Job, counts: Mapping[str, int], first_file: str | None) -> dict:
    """The API's JSON of the job (:func:`api.web.serializers.job_json`) with its ``name``."""
    return job_json(job, counts) | {"name": job_name(job, first_file)}


def duration(seconds: float | None) -> str:
    """``seconds`` for people: ``42 s``, ``7 min 5 s``, ``2 h 05 min``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"
