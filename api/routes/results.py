"""Per-file results of a job: JSON pages (cursor on file id) and a streamed CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, request, stream_with_context, url_for
from sqlalchemy import select

from api import jobs
from api.routes import bp, db
from api.routes.system import registry
from api.schemas import csv_header, csv_row, parse_result_query, result_row
from api.tables import File, Job

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
)


def job_labels(job: Job) -> list[str]:
    """Class labels of the job's model, in the model's order.

    Taken from the registry; when the model is gone from it, from a stored result instead.
    """
    for entry in registry().list():
        if entry.get("name") == job.model_name and entry.get("labels"):
            return list(entry["labels"])
    probs = db().scalar(
        select(File.probabilities)
        .where(File.job_id == job.id, File.probabilities.is_not(None))
        .order_by(File.id)
        .limit(1)
    )
    return list(probs or {})


@bp.get("/jobs/<job_id>/results")
def get_results(job_id: str):
    """One page of results in file id order, with filters and the next cursor."""
    job = jobs.get_job(db(), job_id)
    query = parse_result_query(request.args)
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
        "labels": job_labels(job),
        "items": [result_row(row) for row in rows],
        "next_cursor": None if cursor is None else str(cursor),
        "links": {
            "next": None
            if cursor is None
            else url_for("api.get_results", job_id=job.id, **query.as_args(cursor)),
        },
    }


def _csv_lines(job_id: str, labels: list[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(csv_header(labels))
    yield flush()
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
        writer.writerows(csv_row(row, labels) for row in rows)
        last = rows[-1].id
        yield flush()


@bp.get("/jobs/<job_id>/results.csv")
def export_results(job_id: str):
    """Every file's result as CSV, streamed batch by batch (memory flat whatever the size)."""
    job = jobs.get_job(db(), job_id)
    labels = job_labels(job)
    db().commit()
    return Response(
        stream_with_context(_csv_lines(job.id, labels)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="aer-{job.id}.csv"'},
    )
