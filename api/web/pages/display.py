"""What the pages show of a job: its JSON shape (the API's) plus a display name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from urllib.parse import urlsplit

from api.store.tables import Job
from api.web.serializers import job_json


def job_name(job: Job, first_file: str | None) -> str:
    """The job's ``name`` option; else its folder's name (folder jobs), its bucket prefix
    (``s3`` jobs), its URLs' host (``urls`` jobs) or its first file's top folder or name
    (uploads); else its id."""
    name = (job.options or {}).get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    if job.source_kind == "folder":
        return PurePath(job.source).name or job.source
    if job.source_kind == "s3":
        return job.source
    if job.source_kind == "urls":
        hosts = url_hosts(job.source)
        more = len(hosts) - 1
        if hosts:
            return hosts[0] if not more else f"{hosts[0]} and {more} more host{'s' * (more > 1)}"
    if first_file:
        return PurePath(first_file).parts[0]
    return job.id


def url_hosts(source: str) -> list[str]:
    """The hosts of a ``urls`` job's source (one URL a line), in order, each once."""
    hosts: dict[str, None] = {}
    for line in source.splitlines():
        try:
            host = urlsplit(line.strip()).hostname
        except ValueError:
            host = None
        if host:
            hosts[host] = None
    return list(hosts)


def job_source(job: Job) -> str:
    """Where the job's files come from, for people: ``uploaded files``, ``a folder on the
    server``, ``s3://calls/2026-12/ (*.wav, with subfolders)`` or ``3 URLs on example.com``.
    A URL itself is never shown (it may carry a signature)."""
    options = job.options or {}
    if job.source_kind == "s3":
        pattern = options.get("pattern") or "audio files"
        depth = "with subfolders" if options.get("recursive", True) else "this level only"
        return f"{job.source} ({pattern}, {depth})"
    if job.source_kind == "urls":
        count = len([line for line in job.source.splitlines() if line.strip()])
        hosts = url_hosts(job.source)
        where = f" on {', '.join(hosts[:3])}{' …' if len(hosts) > 3 else ''}" if hosts else ""
        return f"{count} URL{'' if count == 1 else 's'}{where}"
    if job.source_kind == "folder":
        return "a folder on the server"
    if job.source_kind == "upload":
        return "uploaded files"
    return job.source_kind


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


def filesize(size: int | None) -> str:
    """``size`` bytes for people: ``512 B``, ``3.4 kB``, ``12.0 MB`` (as the page's script)."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} kB"
    return f"{size / 1024 / 1024:.1f} MB"
