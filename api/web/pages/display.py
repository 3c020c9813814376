"""What the pages show of a job: its JSON shape (the API's) plus a display name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from api.store.tables import Job
from api.web.serializers import job_json


def job_name(job: Job, first_file: str | None) -> str:
    """The job's ``name`` option; else its folder's name (folder jobs) or its first file's
    top folder or name (uploads); else its id."""
    name = (job.options or {}).get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    if job.source_kind == "folder":
        return PurePath(job.source).name or job.source
    if first_file:
        return PurePath(first_file).parts[0]
    return job.id


def job_row(job: Job, counts: Mapping[str, int], first_file: str | None) -> dict:
    """The API's JSON of the job (:func:`api.web.serializers.job_json`) with its ``name``."""
    return job_json(job, counts) | {"name": job_name(job, first_file)}
