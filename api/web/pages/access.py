"""The jobs a page may reach: the login's tenant's. Every page finds, lists, cancels and
deletes jobs (and lists their exports) through these functions, so that who may see what is
decided in one place."""

from __future__ import annotations

from collections.abc import Sequence

from api.store import exports, jobs
from api.store.tables import Export, Job
from api.web.auth import tenant
from api.web.context import db, settings


def find_job(job_id: str) -> Job:
    """The job whose id is ``job_id`` or starts with it, as the API finds it (404 otherwise)."""
    return jobs.find_job(db(), job_id, tenant_id=tenant())


def list_jobs(*, offset: int, limit: int, state: str | None, search: str | None):
    """One page of the reachable jobs, newest first: (jobs, total)."""
    return jobs.list_jobs(
        db(), tenant_id=tenant(), offset=offset, limit=limit, state=state, search=search
    )


def cancel_job(job_id: str) -> Job:
    """Cancel a reachable job (a job that already ended is returned unchanged)."""
    return jobs.cancel_job(db(), find_job(job_id).id, tenant_id=tenant())


def delete_job(job_id: str) -> None:
    """Delete a reachable job, its results and its uploaded audio."""
    jobs.delete_job(db(), settings(), find_job(job_id).id, tenant_id=tenant())


def list_exports(job_id: str) -> Sequence[Export]:
    """The bucket exports of a reachable job, oldest first."""
    return exports.list_exports(db(), find_job(job_id).id, tenant_id=tenant())
