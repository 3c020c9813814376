"""Trainings of custom models: created by the API, claimed and finished by a worker.

State changes are conditional updates, like the jobs': a training runs once even when its
message is delivered twice. Each function takes an open session and never commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.tables import Training, TrainingState, utcnow


class TrainingNotFoundError(StoreError, LookupError):
    """No training has that id."""

    code = "training_not_found"
    status = 404


def create_training(
    session: Session, *, name: str, source: dict, options: dict, tenant_id: str
) -> Training:
    """Insert a queued training of ``tenant_id``; enqueue it only after the session commits."""
    training = Training(
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        name=name,
        state=TrainingState.QUEUED,
        source=source,
        options=options,
        created_at=utcnow(),
    )
    session.add(training)
    session.flush()
    return training


def get_training(session: Session, training_id: str, *, tenant_id: str | None) -> Training:
    """The training ``training_id`` of ``tenant_id`` (None: of any tenant, for the worker);
    raises :class:`TrainingNotFoundError`, also for another tenant's."""
    training = session.get(Training, training_id)
    if training is None or tenant_id not in (None, training.tenant_id):
        raise TrainingNotFoundError(f"no training {training_id!r}")
    return training


def claim_training(session: Session, training_id: str, *, lease_until: datetime) -> bool:
    """Take a queued training (or one whose lease expired) for this worker."""
    now = utcnow()
    claimable = (Training.state == TrainingState.QUEUED) | (
        (Training.state == TrainingState.RUNNING) & (Training.lease_expires_at < now)
    )
    result = session.execute(
        update(Training)
        .where(Training.id == training_id, claimable)
        .values(
            state=TrainingState.RUNNING,
            started_at=now,
            lease_expires_at=lease_until,
            attempts=Training.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def stalled_trainings(session: Session, *, queued_for_s: float) -> list[str]:
    """Trainings whose message may be lost: queued for more than ``queued_for_s``, or running
    under an expired lease (their worker died). Sending one twice is harmless: only one claim
    succeeds."""
    now = utcnow()
    queued_before = now - timedelta(seconds=queued_for_s)
    stalled = ((Training.state == TrainingState.QUEUED) & (Training.created_at < queued_before)) | (
        (Training.state == TrainingState.RUNNING) & (Training.lease_expires_at < now)
    )
    return list(session.scalars(select(Training.id).where(stalled).order_by(Training.id)))


def report_progress(session: Session, training_id: str, stage: str, done: int, total: int) -> None:
    """Record the stage a running training is at."""
    session.execute(
        update(Training)
        .where(Training.id == training_id, Training.state == TrainingState.RUNNING)
        .values(progress={"stage": stage, "done": done, "total": total})
        .execution_options(synchronize_session=False)
    )


def finish_training(session: Session, training_id: str, *, version: str, metrics: dict) -> bool:
    """Mark a running training succeeded, with the model version and held-out metrics."""
    return _settle(
        session, training_id, state=TrainingState.SUCCEEDED, model_version=version, metrics=metrics
    )


def fail_training(session: Session, training_id: str, error: str) -> bool:
    """Mark a running training failed, saying why."""
    return _settle(session, training_id, state=TrainingState.FAILED, error=error)


def _settle(session: Session, training_id: str, **values) -> bool:
    result = session.execute(
        update(Training)
        .where(Training.id == training_id, Training.state == TrainingState.RUNNING)
        .values(finished_at=utcnow(), lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
