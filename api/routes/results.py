"""Per-file results of a job: JSON pages (cursor on file id) and the streamed CSV export, one
row per file or (``?granularity=segment``) one row per segment."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request, stream_with_context, url_for
from sqlalchemy import select

from api import jobs
from api.routes import bp, db, segments
from api.routes.views import job_view
from api.schemas import (
    ResultView,
    csv_header,
    csv_row,
    csv_text,
    parse_granularity,
    parse_result_query,
    parse_uncertain_below,
    result_row,
)
from api.tables import File

#: Rows read per query while streaming the CSV export (memory is bounded by this).
CSV_BATCH = 1000
_CSV_COLUMNS = (
    File.id,
    File.rel_path,
    File.state,
    File.duration_s,
    File.sample_rate,
    File.channels,
    File.label,
    File.confidence,
    File.probabilities,
    File.error,
    File.error_code,
    File.processed_at,
    File.model_version,
    File.segment_count,
    File.summary,
)


@bp.get("/jobs/<job_id>/results")
def get_results(job_id: str):
    """One page of results in file id order, with filters and the next cursor."""
    job = jobs.get_job(db(), job_id)
    query = parse_result_query(request.args)
    view = job_view(job, query.uncertain_below)
    stmt = select(File).where(File.job_id == job.id)
    if query.cursor is not None:
        stmt = stmt.where(File.id > query.cursor)
    if query.label is not None:
        stmt = stmt.where(File.label == query.label)
    if query.min_confidence is not None:
        stmt = stmt.where(File.confidence >= query.min_confidence)
    if query.state is not None:
        stmt = stmt.where(File.state == query.state)
    rows = db().scalars(stmt.order_by(File.id).limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = rows[-1].id if more else None
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
            else url_for("api.get_results", job_id=job.id, **query.as_args(cursor)),
        },
    }


def _file_links(job_id: str, file_id: int) -> dict:
    return {"segments": url_for("api.get_segments", job_id=job_id, file_id=file_id)}


def _file_csv_lines(job_id: str, view: ResultView) -> Iterator[str]:
    yield csv_text([], csv_header(view.labels))
    session, last = db(), 0
    while True:
        rows = session.execute(
            select(*_CSV_COLUMNS)
            .where(File.job_id == job_id, File.id > last)
            .order_by(File.id)
            .limit(CSV_BATCH)
        ).all()
        session.commit()  # end the read transaction between batches: writers need not wait
        if not rows:
            return
        last = rows[-1].id
        yield csv_text(csv_row(row, view) for row in rows)


@bp.get("/jobs/<job_id>/results.csv")
def export_results(job_id: str):
    """Every file's (or every segment's) result as CSV, streamed batch by batch (memory flat
    whatever the size)."""
    job = jobs.get_job(db(), job_id)
    granularity = parse_granularity(request.args)
    view = job_view(job, parse_uncertain_below(request.args))
    db().commit()
    if granularity == "segment":
        lines, name = segments.segment_csv_lines(job.id, view), f"aer-{job.id}-segments.csv"
    else:
        lines, name = _file_csv_lines(job.id, view), f"aer-{job.id}.csv"
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
