"""Corrected labels: a person's label on a file or a segment of a finished job, and the
labelled clips they make for training a custom model.

Each function takes an open session and never commits.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.jobs import find_job, get_job
from api.store.results import get_file
from api.store.states import ACTIVE_JOB_STATES
from api.store.tables import File, Segment, utcnow

#: A label: letters, digits and ``_ - . space``, 1-100 characters, no leading blank.
LABEL = re.compile(r"[\w][\w .-]{0,99}")


class JobNotFinishedError(StoreError):
    """Labels go on results: the job is still queued or running."""

    code = "job_not_finished"
    status = 409


class SegmentNotInFileError(StoreError, LookupError):
    """No segment has that id in that file."""

    code = "segment_not_found"
    status = 404


class InvalidLabelError(StoreError, ValueError):
    """A label is empty, too long or has characters other than letters, digits, ``_ - .``."""

    code = "invalid_label"
    status = 422


def check_label(label: str) -> str:
    """``label`` stripped, or :class:`InvalidLabelError`."""
    label = label.strip()
    if not LABEL.fullmatch(label):
        raise InvalidLabelError(
            f"label {label!r}: use 1-100 letters, digits, spaces or _ - . (not first)"
        )
    return label


def _finished_file(session: Session, job_id: str, file_id: int, tenant_id: str) -> File:
    job = find_job(session, job_id, tenant_id=tenant_id)
    if job.state in ACTIVE_JOB_STATES:
        raise JobNotFinishedError(f"job {job_id!r} is {job.state}: label it once it has finished")
    return get_file(session, job.id, file_id)


def label_file(
    session: Session, job_id: str, file_id: int, label: str | None, *, tenant_id: str
) -> File:
    """Set (or with None, clear) the corrected label of a file of a finished job of
    ``tenant_id``."""
    file = _finished_file(session, job_id, file_id, tenant_id)
    file.corrected_label = None if label is None else check_label(label)
    file.corrected_at = None if label is None else utcnow()
    session.flush()
    return file


def label_segment(
    session: Session,
    job_id: str,
    file_id: int,
    segment_id: int,
    label: str | None,
    *,
    tenant_id: str,
) -> Segment:
    """Set (or with None, clear) the corrected label of one segment of a finished job's file."""
    file = _finished_file(session, job_id, file_id, tenant_id)
    segment = session.get(Segment, segment_id) if 0 <= segment_id < 2**63 else None
    if segment is None or segment.file_id != file.id:
        raise SegmentNotInFileError(f"file {file_id} of job {job_id!r} has no segment {segment_id}")
    segment.corrected_label = None if label is None else check_label(label)
    segment.corrected_at = None if label is None else utcnow()
    session.flush()
    return segment


def labelled_clips(session: Session, job_ids: list[str], *, tenant_id: str) -> list[dict]:
    """Every corrected label of the jobs as training clips: ``{"path", "label"}`` for a file,
    plus ``start_s``/``end_s`` for a segment (the span of the file it covers).

    Speakers are unknown (None): a custom model trained from them is held out by file.
    """
    for job_id in job_ids:  # unknown jobs (or another tenant's) are an error, not an empty set
        get_job(session, job_id, tenant_id=tenant_id)
    files = session.execute(
        select(File.path, File.corrected_label)
        .where(File.job_id.in_(job_ids), File.corrected_label.is_not(None))
        .order_by(File.id)
    ).all()
    segments = session.execute(
        select(File.path, Segment.corrected_label, Segment.start_s, Segment.end_s)
        .join(File, File.id == Segment.file_id)
        .where(Segment.job_id.in_(job_ids), Segment.corrected_label.is_not(None))
        .order_by(Segment.id)
    ).all()
    clips = [{"path": path, "label": label} for path, label in files]
    clips += [
        {"path": path, "label": label, "start_s": start, "end_s": end}
        for path, label, start, end in segments
    ]
    return clips
