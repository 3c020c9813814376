"""Corrected labels: ``PUT`` a person's label on a file or a segment of a finished job (the
training data of custom models), ``DELETE`` to clear it."""

from __future__ import annotations

from flask import Blueprint, request

from api.store import audit, labels
from api.web.auth import principal, tenant
from api.web.context import db
from api.web.schemas import Label, LabelRequest
from api.web.serializers import label_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("labels", __name__)
FILE = "/jobs/<job_id>/files/<int:file_id>/label"
SEGMENT = "/jobs/<job_id>/files/<int:file_id>/segments/<int:segment_id>/label"
_ANSWERS = Responses(HTTP_200=Label, **errors(400, 404, 409, 415, 422))


def _label() -> str | None:
    return request.context.json.label if request.method == "PUT" else None


def _audit(job_id: str, what: str, label: str | None) -> None:
    action = "label.clear" if label is None else "label.set"
    audit.record(db(), principal(), action, "job", job_id, target=what, label=label)


@bp.put(FILE)
@bp.delete(FILE)
@endpoint(json=LabelRequest, resp=_ANSWERS, tags=("labels",), scope="submit")
def label_file(job_id: str, file_id: int):
    """Set (PUT ``{"label": ...}``) or clear (DELETE) the corrected label of a file."""
    file = labels.label_file(db(), job_id, file_id, _label(), tenant_id=tenant())
    _audit(file.job_id, f"file {file_id}", file.corrected_label)
    return label_json(job_id, file_id, file)


@bp.put(SEGMENT)
@bp.delete(SEGMENT)
@endpoint(json=LabelRequest, resp=_ANSWERS, tags=("labels",), scope="submit")
def label_segment(job_id: str, file_id: int, segment_id: int):
    """Set (PUT ``{"label": ...}``) or clear (DELETE) the corrected label of a segment."""
    segment = labels.label_segment(db(), job_id, file_id, segment_id, _label(), tenant_id=tenant())
    _audit(segment.job_id, f"segment {segment_id}", segment.corrected_label)
    return label_json(job_id, file_id, segment, segment_id)
