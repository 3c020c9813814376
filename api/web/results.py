"""Per-file results of a job: JSON pages (cursor on file id), and the whole table as a CSV,
JSON Lines or Parquet download, one row per file or (``?granularity=segment``) per segment."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, Response, request, stream_with_context, url_for
from werkzeug.wsgi import wrap_file

from api.store import audit, formats, jobs, results, tabular
from api.web.auth import principal, tenant
from api.web.context import db, settings
from api.web.errors import APIError
from api.web.schemas import ExportQuery, ResultPage, ResultQuery
from api.web.serializers import result_row
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors
from api.web.views import job_view

bp = Blueprint("results", __name__)


@bp.get("/jobs/<job_id>/results")
@endpoint(
    query=ResultQuery,
    resp=Responses(HTTP_200=ResultPage, **errors(404, 409, 422)),
    tags=("results",),
    scope="read",
)
def get_results(job_id: str):
    """One page of results in file id order, with filters and the next cursor."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    query: ResultQuery = request.context.query
    view = job_view(job, query.uncertain_below)
    rows, cursor = results.result_page(
        db(),
        job.id,
        after_id=query.cursor or None,
        limit=query.limit,
        label=query.label,
        min_confidence=query.min_confidence,
        state=query.state,
    )
    return {
        "job_id": job.id,
        "job_state": job.state,
        "labels": list(view.labels),
        "uncertain_below": view.uncertain_below,
        "items": [result_row(row, view, _file_links(job.id, row.id)) for row in rows],
        "next_cursor": None if cursor is None else str(cursor),
        "links": {
            "next": None
            if cursor is None
            else url_for("results.get_results", job_id=job.id, **query.as_args(cursor)),
        },
    }


def _file_links(job_id: str, file_id: int) -> dict:
    return {"segments": url_for("segments.get_segments", job_id=job_id, file_id=file_id)}


@bp.get("/jobs/<job_id>/results.<fmt>")
@endpoint(
    query=ExportQuery,
    resp=Responses("HTTP_200", **errors(400, 404, 409, 422)),
    tags=("results",),
    scope="read",
)
def export_results(job_id: str, fmt: str):
    """Every file's (or every segment's) result as ``csv`` (``text/csv``), ``jsonl`` (JSON
    Lines, ``application/x-ndjson``: one object per row, keyed by the CSV's columns) or
    ``parquet`` (``application/vnd.apache.parquet``), with the same columns and values in each.
    CSV and JSON Lines are streamed batch by batch, Parquet is written to a temporary file
    first: memory stays flat whatever the size. Another extension is a 400."""
    if fmt not in formats.FORMATS:
        raise APIError(
            f"unknown format {fmt!r}: use one of {', '.join(formats.FORMATS)}",
            status=400,
            code="unknown_format",
        )
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    query: ExportQuery = request.context.query
    view = job_view(job, query.uncertain_below, full_precision=query.precision == "full")
    audit.record(
        db(),
        principal(),
        "results.download",
        "job",
        job.id,
        granularity=query.granularity,
        format=fmt,
    )
    db().commit()
    table = tabular.result_table(db, job.id, view, query.granularity)
    suffix = "-segments" if query.granularity == "segment" else ""
    headers = {"Content-Disposition": f'attachment; filename="aer-{job.id}{suffix}.{fmt}"'}
    if fmt == "parquet":
        return _parquet_response(table, headers)
    chunks = formats.csv_chunks(table) if fmt == "csv" else formats.jsonl_chunks(table)
    return Response(stream_with_context(chunks), mimetype=formats.MEDIA_TYPES[fmt], headers=headers)


def _parquet_response(table: tabular.Table, headers: dict) -> Response:
    """Write the table to a temporary file and send it; the file is unlinked at once (its
    open handle keeps it readable until the answer is sent)."""
    folder = settings().temp_dir
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".parquet", delete=False) as tmp:
        path = Path(tmp.name)
    try:
        size = formats.write_parquet(table, path)
        handle = path.open("rb")
    finally:
        path.unlink(missing_ok=True)
    response = Response(
        wrap_file(request.environ, handle),
        mimetype=formats.MEDIA_TYPES["parquet"],
        headers=headers,
        direct_passthrough=True,
    )
    response.content_length = size
    return response
