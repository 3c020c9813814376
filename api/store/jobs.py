"""Jobs as the API sees them: create, read, cancel and delete a job, and read its results.

The API calls :func:`create_job`, :func:`find_job` (an id or a unique prefix of one),
:func:`get_job`, :func:`list_jobs`, :func:`file_counts`, :func:`cancel_job`, :func:`delete_job`
and the readers (:func:`file_segments`, :func:`job_segments`, :func:`channel_name`). Every
function that finds or writes a job takes the tenant: a job of another tenant is not found
(:class:`JobNotFoundError`), exactly like a job that does not exist. The readers take the id of
a job already found that way. The worker uses :func:`analysis_options` (a job's ``channels`` and
``segmentation``) and :func:`is_within`; its own state changes live in :mod:`api.store.processing`.
Each function takes an open session and never commits (``api.store.db.session_scope`` does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.store import uploads, webhooks
from api.store.errors import StoreError
from api.store.settings import Settings
from api.store.storage import open_storage
from api.store.tables import (
    ACTIVE_JOB_STATES,
    SOURCE_KINDS,
    File,
    FileState,
    Job,
    JobState,
    Segment,
    utcnow,
)
from api.store.workers import file_lost
from core.options import CHANNEL_MODES, SEGMENTATIONS

#: Fewest hex digits of a job id that :func:`find_job` looks up as a prefix.
MIN_ID_PREFIX = 6
_HEX = "0123456789abcdef"
#: Largest page of segments :func:`file_segments` and :func:`job_segments` return.
MAX_SEGMENT_PAGE = 10_000


class JobNotFoundError(StoreError, LookupError):
    """No job has that id."""

    code = "job_not_found"
    status = 404


class AmbiguousJobIdError(StoreError, LookupError):
    """Several jobs start with the id prefix given."""

    code = "ambiguous_job_id"
    status = 409


class SourceNotAllowedError(StoreError, PermissionError):
    """A folder job names a folder outside ``AER_ALLOWED_ROOTS``."""

    code = "source_not_allowed"
    status = 403


class SourceNotFoundError(StoreError, FileNotFoundError):
    """A folder job names a folder that does not exist (inside an allowed root)."""

    code = "source_not_found"
    status = 422


class InvalidOptionsError(StoreError, ValueError):
    """A job option has a value AER does not know."""

    code = "invalid_options"
    status = 422


@dataclass(frozen=True)
class AnalysisOptions:
    """How the files of a job are analysed (see ``core.analyze.analyze_file``)."""

    channels: str = CHANNEL_MODES[0]
    segmentation: str = SEGMENTATIONS[0]


def analysis_options(options: Mapping[str, Any] | None) -> AnalysisOptions:
    """The ``channels`` and ``segmentation`` of a job's ``options`` (defaults when missing).

    Raises:
        InvalidOptionsError: a value is not one of :data:`CHANNEL_MODES` / :data:`SEGMENTATIONS`.
    """
    options = options or {}
    values = {}
    for name, allowed in (("channels", CHANNEL_MODES), ("segmentation", SEGMENTATIONS)):
        value = options.get(name)
        if value is None or value == "":
            continue
        if value not in allowed:
            raise InvalidOptionsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        values[name] = value
    return AnalysisOptions(**values)


def channel_name(settings: Settings, index: int, *, channels: str = "split") -> str:
    """The display name of channel ``index`` of a result.

    ``"mix"`` for the one channel of a mixed-down job (``channels="mix"``); otherwise the name
    ``AER_CHANNEL_NAMES`` gives the index (default ``0=agent,1=customer``), else
    ``"channel <index>"``.
    """
    if channels == "mix":
        return "mix"
    return dict(settings.channel_names).get(index, f"channel {index}")


def new_job_id() -> str:
    """A fresh job id (32 hex digits)."""
    return uuid.uuid4().hex


def check_folder(settings: Settings, folder: str | Path) -> Path:
    """The resolved ``folder`` if it is a directory inside an allowed root.

    Raises:
        SourceNotAllowedError: outside every ``AER_ALLOWED_ROOTS`` entry (or none configured).
        SourceNotFoundError: inside a root but not an existing directory.
    """
    real = _allowed(settings, folder, "folder")
    if not real.is_dir():
        raise SourceNotFoundError(f"folder {str(folder)!r} does not exist or is not a folder")
    return real


def check_file(settings: Settings, path: str | Path) -> Path:
    """The resolved ``path`` if it is a file inside an allowed root (as :func:`check_folder`)."""
    real = _allowed(settings, path, "file")
    if not real.is_file():
        raise SourceNotFoundError(f"file {str(path)!r} does not exist or is not a file")
    return real


def _allowed(settings: Settings, path: str | Path, kind: str) -> Path:
    """``path`` resolved (links and ``..`` followed), or :class:`SourceNotAllowedError` when it
    lies outside every allowed root."""
    real = Path(path).expanduser().resolve()
    if not is_within(real, settings.allowed_roots):
        which = "an allowed root" if settings.allowed_roots else "an allowed root (none is set)"
        raise SourceNotAllowedError(
            f"{kind} {str(path)!r} is not inside {which}: the server reads only {kind}s under"
            f" AER_ALLOWED_ROOTS. To allow it, start the server with AER_ALLOWED_ROOTS set to"
            f" this {kind}'s folder or a parent ('{os.pathsep}'-separated), or `aer serve"
            f" --allow-root DIR`; or upload the files instead (`aer submit DIR`)"
        )
    return real


def is_within(path: Path, roots: Iterable[Path]) -> bool:
    """Whether the resolved ``path`` lies inside one of ``roots``."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def create_job(
    session: Session,
    *,
    source_kind: str,
    source: str,
    options: dict | None,
    model_name: str,
    tenant_id: str,
    job_id: str | None = None,
    stored_bytes: int = 0,
    callback_url: str | None = None,
) -> Job:
    """Insert a queued job of ``tenant_id``; enqueue its enumeration only after the session
    commits. ``stored_bytes``: the uploaded audio it holds (for the storage quota).

    With a ``callback_url`` the job gets a fresh ``callback_secret`` that signs its events
    (:mod:`api.store.webhooks`).
    """
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {SOURCE_KINDS}, got {source_kind!r}")
    job = Job(
        id=job_id or new_job_id(),
        tenant_id=tenant_id,
        stored_bytes=stored_bytes,
        state=JobState.QUEUED,
        source_kind=source_kind,
        source=str(source),
        options=dict(options or {}),
        model_name=model_name,
        created_at=utcnow(),
        callback_url=callback_url,
        callback_secret=webhooks.new_secret() if callback_url else None,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str, *, tenant_id: str) -> Job:
    """The job ``job_id`` of ``tenant_id``; raises :class:`JobNotFoundError` (also when it
    belongs to another tenant)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise JobNotFoundError(f"no job {job_id!r}")
    return job


def find_job(session: Session, job_id: str, *, tenant_id: str) -> Job:
    """The job of ``tenant_id`` whose id is ``job_id`` or starts with it (at least
    :data:`MIN_ID_PREFIX` hex digits, as the short ids the CLI shows).

    Raises:
        JobNotFoundError: no job of the tenant has that id or prefix.
        AmbiguousJobIdError: several of its jobs start with that prefix.
    """
    mine = Job.tenant_id == tenant_id
    job = session.scalar(select(Job).where(Job.id == job_id, mine))
    if job is not None:
        return job
    prefix = job_id.lower()
    if not MIN_ID_PREFIX <= len(prefix) <= 32 or prefix.strip(_HEX):
        raise JobNotFoundError(f"no job {job_id!r}")
    ids = session.scalars(select(Job.id).where(Job.id.startswith(prefix), mine).limit(2)).all()
    if not ids:
        raise JobNotFoundError(f"no job {job_id!r}")
    if len(ids) > 1:
        raise AmbiguousJobIdError(
            f"several jobs start with {job_id!r}: give more digits of the id (see GET /jobs)"
        )
    return get_job(session, ids[0], tenant_id=tenant_id)


def file_counts(session: Session, job_id: str) -> dict[str, int]:
    """Number of files of the job in each state, plus ``total``."""
    rows = session.execute(
        select(File.state, func.count()).where(File.job_id == job_id).group_by(File.state)
    ).all()
    counts = {state.value: 0 for state in FileState} | {state: n for state, n in rows}
    counts["total"] = sum(n for _, n in rows)
    return counts


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
    offset: int,
    limit: int,
    state: str | None = None,
    search: str | None = None,
) -> tuple[list[Job], int]:
    """One page of the jobs of ``tenant_id``, newest first, optionally in one state and
    matching ``search`` (a case-insensitive part of the job's ``name`` option, its folder or its
    id); returns (jobs, total)."""
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if state:
        stmt = stmt.where(Job.state == state)
    if search:
        pattern = _contains(search)
        stmt = stmt.where(
            Job.options["name"].as_string().ilike(pattern, escape="\\")
            | Job.source.ilike(pattern, escape="\\")
            | Job.id.ilike(pattern, escape="\\")
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = (Job.created_at.desc(), Job.id.desc())
    rows = list(session.scalars(stmt.order_by(*order).offset(offset).limit(limit)))
    return rows, total


def _contains(text: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching ``text`` anywhere."""
    for char in ("\\", "%", "_"):
        text = text.replace(char, "\\" + char)
    return f"%{text}%"


def counts_by_job(session: Session, job_ids: list[str]) -> dict[str, dict[str, int]]:
    """File counts per state (and ``total``) for several jobs, in one grouped COUNT."""
    out: dict[str, dict[str, int]] = {job_id: {"total": 0} for job_id in job_ids}
    if not job_ids:
        return out
    rows = session.execute(
        select(File.job_id, File.state, func.count())
        .where(File.job_id.in_(job_ids))
        .group_by(File.job_id, File.state)
    )
    for job_id, state, n in rows:
        out[job_id][state] = n
        out[job_id]["total"] += n
    return out


def recovering_files(
    session: Session, job_ids: list[str], *, worker_timeout_s: float
) -> dict[str, int]:
    """Per job, its files whose task is gone or whose lease expired
    (:func:`api.store.workers.file_lost`): they wait for the sweep to queue them again."""
    out = dict.fromkeys(job_ids, 0)
    if not job_ids:
        return out
    rows = session.execute(
        select(File.job_id, func.count())
        .where(File.job_id.in_(job_ids), file_lost(utcnow(), timeout_s=worker_timeout_s))
        .group_by(File.job_id)
    )
    out.update(dict(rows.all()))
    return out


def first_files(session: Session, job_ids: list[str]) -> dict[str, str]:
    """The first file (by relative path) of each of the jobs that have files."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(File.job_id, func.min(File.rel_path))
        .where(File.job_id.in_(job_ids))
        .group_by(File.job_id)
    )
    return {job_id: rel_path for job_id, rel_path in rows}


def cancel_job(session: Session, job_id: str, *, tenant_id: str) -> Job:
    """Mark the job of ``tenant_id`` cancelled if it is still queued or running; returns the
    job as it is now (raises :class:`JobNotFoundError`).

    Chunks still in the queue find the job cancelled and skip their files.
    """
    return cancel(session, job_id, tenant_id=tenant_id)[0]


def cancel(session: Session, job_id: str, *, tenant_id: str) -> tuple[Job, list[int]]:
    """:func:`cancel_job`, and the ids of the ``job.cancelled`` webhook attempts it recorded
    (to enqueue after the commit)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.tenant_id == tenant_id, Job.state.in_(ACTIVE_JOB_STATES))
        .values(state=JobState.CANCELLED, finished_at=utcnow(), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    job = get_job(session, job_id, tenant_id=tenant_id)
    session.refresh(job)
    deliveries = webhooks.record_job_event(session, job_id) if result.rowcount == 1 else []
    return job, deliveries


def delete_job(session: Session, settings: Settings, job_id: str, *, tenant_id: str) -> list[int]:
    """Cancel the job of ``tenant_id``, delete it and its files' rows, and remove its uploaded
    audio (raises :class:`JobNotFoundError`).

    Returns the ids of the ``job.cancelled`` webhook attempts recorded (to enqueue after the
    commit; the record of deliveries outlives the job).
    """
    job, deliveries = cancel(session, job_id, tenant_id=tenant_id)
    session.delete(job)
    session.flush()
    if job.source_kind == "upload":
        open_storage(settings).delete_folder(uploads.upload_key(job_id))
    return deliveries


def file_segments(
    session: Session, file_id: int, *, after_id: int | None = None, limit: int = 1000
) -> list[Segment]:
    """One keyset page of a file's segments, in timeline order (channel, then start_s).

    Within a file, id order is timeline order, so the next page starts after the last id:
    ``file_segments(s, fid, after_id=page[-1].id)``. An empty page is the end.
    """
    stmt = select(Segment).where(Segment.file_id == file_id)
    if after_id is not None:
        stmt = stmt.where(Segment.id > after_id)
    return list(session.scalars(stmt.order_by(Segment.id).limit(_page(limit))))


def job_segments(
    session: Session, job_id: str, *, after_id: int | None = None, limit: int = 1000
) -> list[tuple[str, Segment]]:
    """One keyset page of a job's segments as ``(file rel_path, segment)``, in segment id order.

    Each file's segments come in its timeline order, but files written at the same time by
    different workers may interleave. Next page: ``after_id=page[-1][1].id``.
    """
    stmt = (
        select(File.rel_path, Segment)
        .join(File, File.id == Segment.file_id)
        .where(Segment.job_id == job_id)
    )
    if after_id is not None:
        stmt = stmt.where(Segment.id > after_id)
    rows = session.execute(stmt.order_by(Segment.id).limit(_page(limit))).all()
    return [(rel_path, segment) for rel_path, segment in rows]


def _page(limit: int) -> int:
    if not 1 <= limit <= MAX_SEGMENT_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_SEGMENT_PAGE}, got {limit}")
    return limit
