"""Per-file results of a job: JSON pages (cursor on file id) and the streamed CSV export, one
row per file or (``?granularity=segment``) one row per segment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from flask import Blueprint, Response, request, stream_with_context, url_for

from api.store import audit, jobs, results
from api.web.auth import principal, tenant
from api.web.context import db
from api.web.schemas import ExportQuery, ResultPage, ResultQuery
from api.web.serializers import ResultView, csv_header, csv_row, csv_text, result_row
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors
from api.web.views import job_view, segment_csv_lines

bp = Blueprint("results", __name__)
#: Rows read per query while streaming the CSV export (memory is bounded by this).
CSV_BATCH = 1000


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


def _file_csv_lines(job_id: str, view: ResultView) -> Iterator[str]:
    yield csv_text([], csv_header(view.labels))
    session, last = db(), 0
    while True:
        rows = results.file_batch(session, job_id, after_id=last, limit=CSV_BATCH)
        session.commit()  # end the read transaction between batches: writers need not wait
        if not rows:
            return
        last = rows[-1].id
        yield csv_text(csv_row(row, view) for row in rows)


@bp.get("/jobs/<job_id>/results.csv")
@endpoint(
    query=ExportQuery,
    resp=Responses("HTTP_200", **errors(404, 409, 422)),
    tags=("results",),
    scope="read",
)
def export_results(job_id: str):
    """Every file's (or every segment's) result as CSV (``text/csv``), streamed batch by batch:
    memory stays flat whatever the size."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    query: ExportQuery = request.context.query
    view = replace(job_view(job, query.uncertain_below), full_precision=query.precision == "full")
    audit.record(
        db(), principal(), "results.download", "job", job.id, granularity=query.granularity
    )
    db().commit()
    if query.granularity == "segment":
        lines, name = segment_csv_lines(job.id, view), f"aer-{job.id}-segments.csv"
    else:
        lines, name = _file_csv_lines(job.id, view), f"aer-{job.id}.csv"
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
