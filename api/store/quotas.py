"""Per-tenant quotas: queued or running jobs, files per job, and uploaded bytes held.

Each limit is the tenant's own (a column of ``tenants``) when set, else the ``AER_TENANT_*``
default. A refusal is a :class:`QuotaExceededError` naming the quota and its setting.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.keys import ensure_tenant
from api.store.settings import PREFIX, Settings
from api.store.tables import ACTIVE_JOB_STATES, Job, Tenant


class QuotaExceededError(StoreError):
    """A request would take a tenant over one of its quotas."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, quota: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        setting = f"{PREFIX}TENANT_{quota.upper()}"
        self.details = {"quota": quota, "setting": setting}


def limit(session: Session, settings: Settings, tenant_id: str, quota: str) -> int:
    """The tenant's limit for ``quota`` (``max_active_jobs``, ``max_files_per_job`` or
    ``max_stored_mb``): its own when set, else the ``AER_TENANT_<QUOTA>`` default."""
    own = session.scalar(select(getattr(Tenant, quota)).where(Tenant.id == tenant_id))
    return own if own is not None else getattr(settings, f"tenant_{quota}")


def check_new_job(
    session: Session, settings: Settings, tenant_id: str, *, files: int = 0, size: int = 0
) -> int:
    """Raise :class:`QuotaExceededError` if a new job of ``files`` uploaded files holding
    ``size`` bytes would exceed a quota of ``tenant_id``; returns its files-per-job limit.

    Active jobs over the limit answer 429 (retry once some finish); too many files or bytes
    answer 413. Zips and folders are counted by the worker, against the same files limit
    (:func:`job_file_limit`).
    """
    # One submission of a tenant at a time counts and inserts (PostgreSQL; SQLite transactions
    # are serialized anyway), so concurrent requests cannot both take the last place.
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.state.in_(ACTIVE_JOB_STATES))
    )
    most = limit(session, settings, tenant_id, "max_active_jobs")
    if active >= most:
        raise QuotaExceededError(
            f"tenant {tenant_id!r} already has {active} queued or running jobs (quota {most})",
            quota="max_active_jobs",
            status=429,
        )
    max_files = limit(session, settings, tenant_id, "max_files_per_job")
    if files > max_files:
        raise QuotaExceededError(
            f"{files} files in one job; the quota is {max_files}",
            quota="max_files_per_job",
            status=413,
        )
    if size:
        held = session.scalar(
            select(func.coalesce(func.sum(Job.stored_bytes), 0)).where(Job.tenant_id == tenant_id)
        )
        most_mb = limit(session, settings, tenant_id, "max_stored_mb")
        if held + size > most_mb * 2**20:
            raise QuotaExceededError(
                f"tenant {tenant_id!r} holds {held / 2**20:.1f} MB of uploads; "
                f"{size / 2**20:.1f} MB more exceed the quota of {most_mb} MB",
                quota="max_stored_mb",
                status=413,
            )
    return max_files


def job_file_limit(session: Session, settings: Settings, tenant_id: str) -> int:
    """How many files a job of ``tenant_id`` may list: ``AER_MAX_FILES_PER_JOB``, or less when
    the tenant's quota is lower (the worker enforces it on zips and folders)."""
    return min(settings.max_files_per_job, limit(session, settings, tenant_id, "max_files_per_job"))


#: The quotas a tenant may have its own value for (a column of ``tenants`` each).
QUOTAS = ("max_active_jobs", "max_files_per_job", "max_stored_mb")


def set_limits(session: Session, tenant_id: str, **limits: int | None) -> Tenant:
    """Give ``tenant_id`` (created when new) its own value for some :data:`QUOTAS`; 0 or None
    returns a quota to its ``AER_TENANT_*`` default."""
    unknown = set(limits) - set(QUOTAS)
    if unknown:
        raise ValueError(f"unknown quotas: {', '.join(sorted(unknown))}")
    tenant = ensure_tenant(session, tenant_id)
    for name, value in limits.items():
        setattr(tenant, name, value or None)
    session.flush()
    return tenant
