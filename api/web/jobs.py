"""``/jobs``: submit (uploads, a server-side folder, a bucket prefix or URLs), list, inspect,
cancel and delete jobs.

Every job belongs to the tenant of the key that submitted it; other tenants get a 404 for it.
Folder jobs read the server's disk and need the ``admin`` scope; bucket and URL jobs need only
``submit``: ``AER_ALLOWED_BUCKETS`` and ``AER_ALLOWED_URL_HOSTS`` say what they may read.

Submitting only validates, checks the tenant's quotas, saves the uploaded bytes and inserts
the job: the job is committed, then its enumeration is enqueued, and the answer is 202. Listing
folders and buckets, fetching, opening zips and decoding audio all happen in the worker.
"""

from __future__ import annotations

import contextlib
import logging
import re

from flask import Blueprint, Response, request, url_for

from api.store import audit, jobs, quotas
from api.store.objects import S3Address, check_bucket, check_url, parse_s3
from api.store.queue import enqueue_deliveries, enqueue_enumeration
from api.store.receivers import check_receiver
from api.store.storage import open_storage
from api.store.tables import Job
from api.store.uploads import tidy_incoming, upload_key
from api.web.auth import principal, require, tenant
from api.web.context import celery, db, registry, settings
from api.web.errors import APIError, invalid
from api.web.schemas import Job as JobModel
from api.web.schemas import JobListQuery, JobOptions, JobPage, JobRequest, UploadForm
from api.web.serializers import job_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors
from api.web.tracing import bind_job
from api.web.uploads import check_uploads, save_uploads, upload_size
from api.web.views import domain_summary

bp = Blueprint("jobs", __name__)
log = logging.getLogger(__name__)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def resolve_model(name: str) -> str:
    """The registry name of model ``name`` (``"default"`` resolved); 422 when unknown, or when
    its files fail the checks of loading (``model_unavailable``)."""
    if not _MODEL_NAME.fullmatch(name) or name.endswith((".skops", ".json")):
        raise invalid("model", f"{name!r} is not a model name (see GET /api/v1/models)")
    from core.errors import ModelNotFoundError
    from core.registry import artifact_problem

    try:
        path = registry().resolve(name)
    except ModelNotFoundError:
        message = f"unknown model {name!r} (see GET /api/v1/models)"
        raise APIError(message, status=422, code="model_not_found") from None
    problem = artifact_problem(path)
    if problem:
        message = f"model {path.stem!r} is unavailable: {problem}"
        raise APIError(message, status=422, code="model_unavailable")
    return path.stem


def _submit(
    job_id: str,
    kind: str,
    source: str,
    options: JobOptions,
    *,
    files: int = 0,
    size: int = 0,
    **extra,
) -> Job:
    model = resolve_model(options.model or settings().default_model)
    quotas.check_new_job(db(), settings(), tenant(), files=files, size=size)
    if options.callback_url:
        check_receiver(options.callback_url, allow_private=settings().webhook_allow_private)
    return jobs.create_job(
        db(),
        source_kind=kind,
        source=source,
        options={**options.as_options(), **extra},
        model_name=model,
        tenant_id=tenant(),
        job_id=job_id,
        stored_bytes=size,
        callback_url=options.callback_url,
    )


def _from_uploads(job_id: str, form: UploadForm) -> Job:
    files = [f for f in request.files.getlist("files") if f.filename]
    if not files:
        raise invalid("files", "attach at least one audio file or zip archive")
    check_uploads(files)
    storage, folder = open_storage(settings()), upload_key(job_id)
    size = sum(upload_size(f) for f in files)
    # Validates the model and the quotas first.
    job = _submit(job_id, "upload", storage.location(folder), form, files=len(files), size=size)
    try:
        save_uploads(files, storage, folder)
    except BaseException:
        with contextlib.suppress(OSError):  # the bucket may be what failed
            storage.delete_folder(folder)
        raise
    tidy_incoming(settings().uploads_dir)
    return job


def _from_json(job_id: str, body: JobRequest) -> Job:
    if body.source is not None:
        return _from_bucket(job_id, body)
    if body.urls is not None:
        return _from_urls(job_id, body)
    return _from_folder(job_id, body)


def _from_bucket(job_id: str, body: JobRequest) -> Job:
    address = parse_s3(body.source or "")
    if address.key and not address.key.endswith("/"):
        address = S3Address(address.bucket, address.key + "/")  # a prefix names a folder
    check_bucket(settings(), address)
    options = {"recursive": body.recursive, "pattern": body.pattern}
    return _submit(job_id, "s3", str(address), body.options(), **options)


def _from_urls(job_id: str, body: JobRequest) -> Job:
    urls = [check_url(settings(), url) for url in body.urls or ()]
    # One URL a line: the job's source is never shown, and its options stay small.
    return _submit(job_id, "urls", "\n".join(urls), body.options(), files=len(urls))


def _from_folder(job_id: str, body: JobRequest) -> Job:
    require("admin")
    folder = jobs.check_folder(settings(), body.folder)
    return _submit(
        job_id,
        "folder",
        str(folder),
        body.options(),
        recursive=body.recursive,
        pattern=body.pattern,
    )


@bp.post("/jobs")
@endpoint(
    form=UploadForm,
    json=JobRequest,
    resp=Responses(HTTP_202=JobModel, **errors(400, 403, 413, 415, 422, 429, 507)),
    tags=("jobs",),
    scope="submit",
)
def create_job():
    """Submit a job: 202 with the queued job and its Location, before any audio is read.

    Uploads (``multipart/form-data``, field ``files``, repeatable: audio files and zips), or
    JSON: a server-side ``folder`` (``admin`` scope), a bucket prefix (``source``,
    ``s3://bucket/prefix/``, inside ``AER_ALLOWED_BUCKETS``) or ``urls`` (https, on hosts of
    ``AER_ALLOWED_URL_HOSTS``); a source not allowed is a 403 ``source_not_allowed``, a
    malformed one a 400 ``bad_source``. Listing, fetching, extraction and decoding happen in
    the workers.
    """
    job_id = jobs.new_job_id()
    if request.mimetype == "multipart/form-data":
        job = _from_uploads(job_id, request.context.form)
    else:
        job = _from_json(job_id, request.context.json)
    audit.record(db(), principal(), "job.create", "job", job.id, source=job.source_kind)
    db().commit()  # the worker must find the job when the message arrives
    bind_job(job.id)
    log.info("job submitted (%s, model %s)", job.source_kind, job.model_name)
    enqueue_enumeration(celery(), job.id)
    location = url_for("jobs.get_job", job_id=job.id, _external=True)
    body = job_json(job, {})
    if job.callback_secret:
        body["callback_secret"] = job.callback_secret  # shown this once
    return body, 202, {"Location": location}


@bp.get("/jobs")
@endpoint(
    query=JobListQuery,
    resp=Responses(HTTP_200=JobPage, **errors(422)),
    tags=("jobs",),
    scope="read",
)
def list_jobs():
    """Jobs, newest first, one page at a time, optionally in one state or matching ``q``."""
    query: JobListQuery = request.context.query
    rows, total = jobs.list_jobs(
        db(),
        tenant_id=tenant(),
        offset=query.offset,
        limit=query.size,
        state=query.state,
        search=query.q,
    )
    ids = [job.id for job in rows]
    counts = jobs.counts_by_job(db(), ids)
    recovering = jobs.recovering_files(db(), ids, worker_timeout_s=settings().worker_timeout_s)
    args = {"size": query.size, **({"state": query.state.value} if query.state else {})}
    args |= {"q": query.q} if query.q else {}
    more = query.offset + len(rows) < total
    page = query.page
    return {
        "items": [job_json(job, counts[job.id], recovering[job.id]) for job in rows],
        "page": page,
        "size": query.size,
        "total": total,
        "links": {
            "next": url_for("jobs.list_jobs", page=page + 1, **args) if more else None,
            "prev": url_for("jobs.list_jobs", page=page - 1, **args) if page > 1 else None,
        },
    }


@bp.get("/jobs/<job_id>")
@endpoint(resp=Responses(HTTP_200=JobModel, **errors(404, 409)), tags=("jobs",), scope="read")
def get_job(job_id: str):
    """One job with its counts, progress, timings, files waiting for recovery and how much of
    it is off-domain (``job_id``: the id or a unique prefix of at least 6 hex digits, as every
    ``/jobs/{job_id}`` path accepts)."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    timeout_s = settings().worker_timeout_s
    recovering = jobs.recovering_files(db(), [job.id], worker_timeout_s=timeout_s)[job.id]
    counts = jobs.file_counts(db(), job.id)
    return job_json(job, counts, recovering) | {"domain": domain_summary(job)}


@bp.post("/jobs/<job_id>/cancel")
@endpoint(resp=Responses(HTTP_200=JobModel, **errors(404, 409)), tags=("jobs",), scope="submit")
def cancel_job(job_id: str):
    """Stop a queued or running job: files not yet analysed are skipped, results are kept.
    A job that already ended is answered unchanged."""
    found = jobs.find_job(db(), job_id, tenant_id=tenant())
    job, deliveries = jobs.cancel(db(), found.id, tenant_id=tenant())
    audit.record(db(), principal(), "job.cancel", "job", job.id)
    db().commit()
    enqueue_deliveries(celery(), deliveries)
    return job_json(job, jobs.file_counts(db(), job.id))


@bp.delete("/jobs/<job_id>")
@endpoint(resp=Responses("HTTP_204", **errors(404, 409)), tags=("jobs",), scope="submit")
def delete_job(job_id: str):
    """Cancel the job's queued work, delete its results and its uploaded audio."""
    found = jobs.find_job(db(), job_id, tenant_id=tenant())
    deliveries = jobs.delete_job(db(), settings(), found.id, tenant_id=tenant())
    audit.record(db(), principal(), "job.delete", "job", found.id)
    db().commit()  # the worker must find the attempts when their messages arrive
    enqueue_deliveries(celery(), deliveries)
    return Response(status=204)
