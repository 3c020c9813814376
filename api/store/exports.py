"""Exports of a finished job's results to a bucket: the ``exports`` rows that record them.

The API creates a queued export (the destination checked against ``AER_ALLOWED_BUCKETS``) and
enqueues it after the commit (the sweep sends again one that stays queued); a worker claims it,
writes the table to a temporary file and uploads it (``worker.exports``), then marks it
``done`` or ``failed``. Every function takes an open session and never commits (the caller's
scope does).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.formats import FORMATS
from api.store.objects import S3Address, check_bucket, parse_s3
from api.store.settings import Settings
from api.store.tables import TERMINAL_JOB_STATES, Export, ExportState, Job, utcnow
from api.store.tabular import GRANULARITIES


class ExportNotFoundError(StoreError, LookupError):
    """No export has that id (for that job and tenant)."""

    code = "export_not_found"
    status = 404


class JobNotFinishedError(StoreError):
    """Exports are of finished jobs: the job is still queued or running."""

    code = "job_not_finished"
    status = 409


def object_address(destination: str, job_id: str, fmt: str, granularity: str) -> S3Address:
    """Where an export of ``destination`` is written: under a folder (an address ending in
    ``/``, or a bare bucket) as ``aer-<job id>[-segments].<fmt>``, else the object named.

    Raises:
        AddressError: not a valid ``s3://`` address.
    """
    address = parse_s3(destination)
    if address.key and not address.key.endswith("/"):
        return address
    suffix = "-segments" if granularity == "segment" else ""
    return address.child(f"aer-{job_id}{suffix}.{fmt}")


def create_export(
    session: Session,
    settings: Settings,
    job: Job,
    *,
    destination: str,
    fmt: str,
    options: dict[str, Any],
) -> Export:
    """Insert a queued export of ``job`` (already found for its tenant); enqueue it only after
    the session commits. ``options`` holds ``granularity`` (and the view's ``precision`` and
    ``uncertain_below``).

    Raises:
        AddressError: ``destination`` is not a valid ``s3://`` address (400).
        NotAllowedError: its bucket (or prefix) is not in ``AER_ALLOWED_BUCKETS`` (403).
        JobNotFinishedError: the job is still queued or running (409).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    granularity = options.get("granularity", "file")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    address = object_address(destination, job.id, fmt, granularity)
    check_bucket(settings, address)
    if job.state not in TERMINAL_JOB_STATES:
        raise JobNotFinishedError(f"job {job.id} is {job.state}: export it once it has finished")
    export = Export(
        id=uuid.uuid4().hex,
        job_id=job.id,
        tenant_id=job.tenant_id,
        destination=destination,
        format=fmt,
        options={"granularity": granularity, **options},
        state=ExportState.QUEUED,
        object_key=address.key,
        created_at=utcnow(),
    )
    session.add(export)
    session.flush()
    return export


def bucket_of(export: Export) -> str:
    """The bucket an export writes to."""
    return parse_s3(export.destination).bucket


def list_exports(session: Session, job_id: str, *, tenant_id: str) -> Sequence[Export]:
    """The exports of job ``job_id`` of ``tenant_id``, oldest first."""
    return session.scalars(
        select(Export)
        .where(Export.job_id == job_id, Export.tenant_id == tenant_id)
        .order_by(Export.created_at, Export.id)
    ).all()


def get_export(
    session: Session, export_id: str, *, tenant_id: str | None, job_id: str | None = None
) -> Export:
    """The export ``export_id`` of ``tenant_id`` (None: of any tenant, for the worker) and, when
    given, of job ``job_id``; raises :class:`ExportNotFoundError`."""
    export = session.get(Export, export_id)
    if (
        export is None
        or tenant_id not in (None, export.tenant_id)
        or job_id not in (None, export.job_id)
    ):
        raise ExportNotFoundError(f"no export {export_id!r}")
    return export


def claim_export(session: Session, export_id: str) -> bool:
    """Take a queued export for this worker; also one left ``running`` by a worker that died
    (its message is delivered again), as writing the same object twice is harmless."""
    result = session.execute(
        update(Export)
        .where(
            Export.id == export_id,
            Export.state.in_((ExportState.QUEUED, ExportState.RUNNING)),
        )
        .values(state=ExportState.RUNNING, started_at=utcnow(), error=None)
    )
    return result.rowcount == 1


def stalled_exports(session: Session, *, queued_for_s: float) -> list[str]:
    """Exports whose message may be lost: queued for more than ``queued_for_s`` (sending one
    twice is harmless: the object is written whole either time)."""
    queued_before = utcnow() - timedelta(seconds=queued_for_s)
    return list(
        session.scalars(
            select(Export.id)
            .where(Export.state == ExportState.QUEUED, Export.created_at < queued_before)
            .order_by(Export.id)
        )
    )


def finish_export(session: Session, export_id: str, *, size: int) -> None:
    """Mark a running export ``done``, ``size`` bytes written."""
    session.execute(
        update(Export)
        .where(Export.id == export_id, Export.state == ExportState.RUNNING)
        .values(state=ExportState.DONE, bytes=size, finished_at=utcnow())
    )


def fail_export(session: Session, export_id: str, reason: str) -> None:
    """Mark a running export ``failed`` with ``reason``."""
    session.execute(
        update(Export)
        .where(Export.id == export_id, Export.state == ExportState.RUNNING)
        .values(state=ExportState.FAILED, error=reason[:2000], finished_at=utcnow())
    )
