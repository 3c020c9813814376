"""``/jobs``: submit (uploads or a server-side folder), list, inspect and delete jobs.

Submitting only validates, saves the uploaded bytes and inserts the job: the job is committed,
then its enumeration is enqueued, and the answer is 202. Listing folders, opening zips and
decoding audio all happen in the worker.
"""

from __future__ import annotations

import logging
import re
import shutil

from flask import Response, request, url_for
from sqlalchemy import func, select

from api import jobs
from api.errors import APIError
from api.routes import bp, celery, db, settings
from api.routes.system import registry
from api.routes.uploads import check_uploads, save_uploads
from api.schemas import (
    OPTION_FIELDS,
    JobOptions,
    invalid,
    iso,
    now_utc,
    parse_folder_request,
    parse_job_list,
    parse_job_options,
    progress,
)
from api.tables import File, FileState, Job

log = logging.getLogger(__name__)

#: Name of the worker task that lists a job's files (``worker.tasks.enumerate_job``).
ENUMERATE_TASK = "aer.enumerate_job"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def resolve_model(name: str) -> str:
    """The registry name of model ``name`` (``"default"`` resolved); 422 when unknown."""
    if not _MODEL_NAME.fullmatch(name) or name.endswith((".skops", ".json")):
        raise invalid("model", f"{name!r} is not a model name (see GET /api/v1/models)")
    from core.errors import ModelNotFoundError

    try:
        return registry().resolve(name).stem
    except ModelNotFoundError:
        message = f"unknown model {name!r} (see GET /api/v1/models)"
        raise APIError(message, status=422, code="model_not_found") from None


def job_links(job_id: str) -> dict:
    """Where the job, its results and its CSV export live."""
    return {
        "self": url_for("api.get_job", job_id=job_id),
        "results": url_for("api.get_results", job_id=job_id),
        "csv": url_for("api.export_results", job_id=job_id),
    }


def job_json(job: Job, counts: dict[str, int]) -> dict:
    """The JSON shape of a job with its file counts."""
    counts = {"total": 0, **{s.value: 0 for s in FileState}, **counts}
    return {
        "id": job.id,
        "state": job.state,
        "source": {"kind": job.source_kind},
        "options": job.options or {},
        "model": {"name": job.model_name, "version": job.model_version},
        "counts": counts,
        **progress(job.state, counts, job.started_at, now_utc()),
        "error": job.error,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "links": job_links(job.id),
    }


def counts_by_job(job_ids: list[str]) -> dict[str, dict[str, int]]:
    """File counts per state for several jobs, in one grouped COUNT."""
    out: dict[str, dict[str, int]] = {job_id: {"total": 0} for job_id in job_ids}
    if not job_ids:
        return out
    rows = db().execute(
        select(File.job_id, File.state, func.count())
        .where(File.job_id.in_(job_ids))
        .group_by(File.job_id, File.state)
    )
    for job_id, state, n in rows:
        out[job_id][state] = n
        out[job_id]["total"] += n
    return out


def _submit(
    job_id: str, source_kind: str, source: str, options: JobOptions, **extra_options
) -> Job:
    model = resolve_model(options.model or settings().default_model)
    return jobs.create_job(
        db(),
        source_kind=source_kind,
        source=source,
        options={**options.as_options(), **extra_options},
        model_name=model,
        job_id=job_id,
    )


def _from_uploads(job_id: str) -> Job:
    files = [f for f in request.files.getlist("files") if f.filename]
    if not files:
        raise invalid("files", "attach at least one audio file or zip archive")
    unknown = set(request.form) - set(OPTION_FIELDS)
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    options = parse_job_options(request.form)
    check_uploads(files)
    folder = jobs.upload_dir(settings(), job_id)
    job = _submit(job_id, "upload", str(folder), options)  # validates the model first
    try:
        save_uploads(files, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def _from_folder(job_id: str) -> Job:
    body = request.get_json(silent=True)
    if body is None:
        raise APIError("the body is not valid JSON", status=400)
    folder_request = parse_folder_request(body)
    folder = jobs.check_folder(settings(), folder_request.folder)
    return _submit(
        job_id,
        "folder",
        str(folder),
        folder_request.options,
        recursive=folder_request.recursive,
        pattern=folder_request.pattern,
    )


def enqueue_enumeration(job_id: str) -> None:
    """Send ``aer.enumerate_job`` through the broker of this app's settings.

    The job is already committed: if the broker is down, the worker's sweep enqueues it later
    (after ``AER_LEASE_S``), so the submission still stands.
    """
    from kombu.exceptions import OperationalError

    try:
        celery().send_task(ENUMERATE_TASK, args=(job_id,))
    except OperationalError as exc:
        log.warning("job %s: broker unavailable (%s); the sweep will enqueue it", job_id, exc)


@bp.post("/jobs")
def create_job():
    """Accept a job: 202 with the queued job and its Location, before any audio is read."""
    job_id = jobs.new_job_id()
    if request.mimetype == "multipart/form-data":
        job = _from_uploads(job_id)
    elif request.mimetype == "application/json":
        job = _from_folder(job_id)
    else:
        raise APIError(
            "send multipart/form-data (field 'files') or application/json ({'folder': ...})",
            status=415,
            code="unsupported_media_type",
        )
    db().commit()  # the worker must find the job when the message arrives
    enqueue_enumeration(job.id)
    return (
        job_json(job, {}),
        202,
        {"Location": url_for("api.get_job", job_id=job.id, _external=True)},
    )


@bp.get("/jobs")
def list_jobs():
    """Jobs, newest first, one page at a time, optionally in one state."""
    page, state = parse_job_list(request.args)
    stmt = select(Job)
    if state:
        stmt = stmt.where(Job.state == state)
    total = db().scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = (
        db()
        .scalars(
            stmt.order_by(Job.created_at.desc(), Job.id.desc()).offset(page.offset).limit(page.size)
        )
        .all()
    )
    counts = counts_by_job([job.id for job in rows])
    args = {"size": page.size, **({"state": state} if state else {})}
    more = page.offset + len(rows) < total
    return {
        "items": [job_json(job, counts[job.id]) for job in rows],
        "page": page.page,
        "size": page.size,
        "total": total,
        "links": {
            "next": url_for("api.list_jobs", page=page.page + 1, **args) if more else None,
            "prev": url_for("api.list_jobs", page=page.page - 1, **args) if page.page > 1 else None,
        },
    }


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """One job with its counts, progress and timings."""
    job = jobs.get_job(db(), job_id)
    return job_json(job, jobs.file_counts(db(), job_id))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Cancel the job's queued work, delete its results and its uploaded audio."""
    jobs.delete_job(db(), settings(), job_id)
    return Response(status=204)
