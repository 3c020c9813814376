"""A file's emotion timeline: its classified segments as JSON pages (cursor on segment id), and
every segment of a job as CSV lines for ``results.csv?granularity=segment``."""

from __future__ import annotations

from collections.abc import Iterator

from flask import request, url_for

from api import jobs
from api.errors import APIError
from api.routes import bp, db
from api.routes.views import job_view
from api.schemas import (
    ResultView,
    csv_text,
    parse_segment_query,
    segment_csv_header,
    segment_csv_row,
    segment_row,
)
from api.tables import File

#: Segments read per query while streaming the per-segment CSV (memory is bounded by this).
CSV_BATCH = 2000
#: Largest id a file can have (BIGINT); larger ids in a URL are unknown files, not errors.
MAX_ID = 2**63 - 1


@bp.get("/jobs/<job_id>/files/<int:file_id>/segments")
def get_segments(job_id: str, file_id: int):
    """One page of a file's segments in timeline order (channel, then start), with names,
    probabilities in the model's label order, the ``uncertain`` flag and the next cursor."""
    job = jobs.get_job(db(), job_id)
    file = db().get(File, file_id) if file_id <= MAX_ID else None
    if file is None or file.job_id != job.id:
        raise APIError(f"job {job.id!r} has no file {file_id}", status=404, code="file_not_found")
    query = parse_segment_query(request.args)
    view = job_view(job, query.uncertain_below)
    page = jobs.file_segments(db(), file.id, after_id=query.cursor, limit=query.limit + 1)
    more = len(page) > query.limit
    page = page[: query.limit]
    cursor = page[-1].id if more else None
    return {
        "job_id": job.id,
        "file_id": file.id,
        "file": file.rel_path,
        "state": file.state,
        "segment_count": file.segment_count,
        "labels": list(view.labels),
        "uncertain_below": view.uncertain_below,
        "items": [segment_row(segment, view) for segment in page],
        "next_cursor": None if cursor is None else str(cursor),
        "links": {
            "results": url_for("api.get_results", job_id=job.id),
            "next": None
            if cursor is None
            else url_for(
                "api.get_segments", job_id=job.id, file_id=file.id, **query.as_args(cursor)
            ),
        },
    }


def segment_csv_lines(job_id: str, view: ResultView) -> Iterator[str]:
    """The per-segment CSV of a job, one keyset batch of :data:`CSV_BATCH` segments at a time."""
    yield csv_text([], segment_csv_header(view.labels))
    session, last = db(), None
    while True:
        page = jobs.job_segments(session, job_id, after_id=last, limit=CSV_BATCH)
        if not page:
            session.commit()
            return
        text = csv_text(segment_csv_row(rel_path, seg, view) for rel_path, seg in page)
        last = page[-1][1].id
        session.commit()  # end the read transaction between batches: writers need not wait
        yield text
