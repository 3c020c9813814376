"""``/jobs/{id}/exports``: write a finished job's results to a bucket (CSV, JSON Lines or
Parquet) in the background, and read the record of a job's exports.

Asking for an export needs ``submit``; the destination's bucket (or prefix) must be in
``AER_ALLOWED_BUCKETS`` (403 otherwise). A worker writes and uploads the file
(``worker.exports``); poll the export until it is ``done`` or ``failed``.
"""

from __future__ import annotations

from flask import Blueprint, request, url_for

from api.store import audit, exports, jobs
from api.store.queue import enqueue_export
from api.web.auth import principal, tenant
from api.web.context import celery, db, settings
from api.web.schemas import Export, ExportList, ExportRequest
from api.web.serializers import export_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("exports", __name__)


@bp.post("/jobs/<job_id>/exports")
@endpoint(
    json=ExportRequest,
    resp=Responses(HTTP_202=Export, **errors(400, 404, 409, 413, 415, 422)),
    tags=("results",),
    scope="submit",
)
def create_export(job_id: str):
    """Export a finished job's results to ``destination`` (``s3://bucket/prefix/``): 202 with
    the queued export and its Location. A bucket not in ``AER_ALLOWED_BUCKETS`` is a 403, a
    job still queued or running a 409."""
    body: ExportRequest = request.context.json
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    options = {
        "granularity": body.granularity,
        "precision": body.precision,
        "uncertain_below": body.uncertain_below,
    }
    export = exports.create_export(
        db(), settings(), job, destination=body.destination, fmt=body.format, options=options
    )
    audit.record(
        db(),
        principal(),
        "results.export",
        "job",
        job.id,
        export=export.id,
        destination=export.destination,
        format=export.format,
    )
    db().commit()  # the worker must find it when the message arrives
    enqueue_export(celery(), export.id)
    location = url_for("exports.get_export", job_id=job.id, export_id=export.id, _external=True)
    return export_json(export), 202, {"Location": location}


@bp.get("/jobs/<job_id>/exports")
@endpoint(resp=Responses(HTTP_200=ExportList, **errors(404, 409)), tags=("results",), scope="read")
def list_exports(job_id: str):
    """The job's exports, oldest first."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    return {
        "items": [export_json(e) for e in exports.list_exports(db(), job.id, tenant_id=tenant())]
    }


@bp.get("/jobs/<job_id>/exports/<export_id>")
@endpoint(resp=Responses(HTTP_200=Export, **errors(404, 409)), tags=("results",), scope="read")
def get_export(job_id: str, export_id: str):
    """One export: ``queued``, ``running``, ``done`` (with its size) or ``failed`` (with why)."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    return export_json(exports.get_export(db(), export_id, tenant_id=tenant(), job_id=job.id))
