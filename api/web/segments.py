"""A file's emotion timeline: its classified segments as JSON pages (cursor on segment id)."""

from __future__ import annotations

from flask import Blueprint, request, url_for

from api.store import jobs, results
from api.web.auth import tenant
from api.web.context import db
from api.web.schemas import SegmentPage, SegmentQuery
from api.web.serializers import segment_row
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors
from api.web.views import job_view

bp = Blueprint("segments", __name__)


@bp.get("/jobs/<job_id>/files/<int:file_id>/segments")
@endpoint(
    query=SegmentQuery,
    resp=Responses(HTTP_200=SegmentPage, **errors(404, 409, 422)),
    tags=("results",),
    scope="read",
)
def get_segments(job_id: str, file_id: int):
    """One page of a file's segments in timeline order (channel, then start), with names,
    probabilities in the model's label order, the ``uncertain`` flag and the next cursor."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    file = results.get_file(db(), job.id, file_id)
    query: SegmentQuery = request.context.query
    view = job_view(job, query.uncertain_below)
    page = jobs.file_segments(db(), file.id, after_id=query.cursor or None, limit=query.limit + 1)
    more = len(page) > query.limit
    page = page[: query.limit]
    cursor = page[-1].id if more else None
    next_link = None
    if cursor is not None:
        args = query.as_args(cursor)
        next_link = url_for("segments.get_segments", job_id=job.id, file_id=file.id, **args)
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
        "links": {"results": url_for("results.get_results", job_id=job.id), "next": next_link},
    }
