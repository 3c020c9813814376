"""Worker liveness: one ``workers`` row per running task, kept fresh by its process's heartbeat.

A claim (of files, or of a job's enumeration) names the row of the task that made it. The claim
holds while the row is fresh; once ``last_seen`` is older than ``AER_WORKER_TIMEOUT_S`` the
claimer is *gone* (its process died, or the task ended without settling its work) and the sweep
takes the work back, long before the lease, which stays the backstop for a live but slow task.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, insert, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.store.tables import File, FileState, Worker, utcnow


def register(session: Session, worker_id: str, *, hostname: str, pid: int, task: str) -> None:
    """Record a task that starts now (its first heartbeat)."""
    now = utcnow()
    session.execute(
        insert(Worker).values(
            id=worker_id, hostname=hostname, pid=pid, task=task, started_at=now, last_seen=now
        )
    )


def beat(session: Session, worker_ids: Collection[str]) -> None:
    """Mark the tasks ``worker_ids`` seen now."""
    if worker_ids:
        session.execute(
            update(Worker)
            .where(Worker.id.in_(worker_ids))
            .values(last_seen=utcnow())
            .execution_options(synchronize_session=False)
        )


def forget(session: Session, worker_id: str) -> None:
    """Remove a task that ended (whatever it still claims is then gone at once)."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def prune(session: Session, *, timeout_s: float) -> int:
    """Delete the rows of tasks not seen for ``timeout_s``; returns how many."""
    result = session.execute(delete(Worker).where(Worker.last_seen < seen_since(timeout_s)))
    return result.rowcount or 0


def seen_since(timeout_s: float, now: datetime | None = None) -> datetime:
    """The time a live task has reported in since."""
    return (now or utcnow()) - timedelta(seconds=timeout_s)


def gone(claimer: InstrumentedAttribute, *, timeout_s: float) -> ColumnElement[bool]:
    """SQL: the task named by ``claimer`` has not been seen for ``timeout_s`` (or none is)."""
    alive = exists().where(Worker.id == claimer, Worker.last_seen >= seen_since(timeout_s))
    return ~alive


def file_lost(now: datetime, *, timeout_s: float) -> ColumnElement[bool]:
    """SQL: a file waiting for recovery: running under an expired lease or for a gone task,
    or pending in the hands of a chunk whose task is gone (its message went with it)."""
    holder_gone = gone(File.claimed_by, timeout_s=timeout_s)
    return or_(
        and_(File.state == FileState.RUNNING, or_(File.lease_expires_at < now, holder_gone)),
        and_(File.state == FileState.PENDING, File.claimed_by.is_not(None), holder_gone),
    )
