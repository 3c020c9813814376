"""Database tables (SQLAlchemy 2 typed ORM): ``tenants`` and their ``api_keys``, ``jobs``, their
``files`` and the files' ``segments``; ``trainings`` of custom models; ``purges``, the record of
what the retention task deleted; ``webhooks`` (subscriptions) and ``webhook_deliveries``;
``exports`` of jobs' results to buckets.

The schema is created and changed only by the Alembic migrations in ``migrations/``; keep this
module and the newest migration in step (``tests/service/test_db.py`` compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.store.states import (
    ACTIVE_JOB_STATES,
    DELIVERY_STATES,
    EXPORT_STATES,
    TERMINAL_JOB_STATES,
    UNFINISHED_FILE_STATES,
    DeliveryState,
    ExportState,
    FileState,
    JobState,
    TrainingState,
)

__all__ = [
    "ACTIVE_JOB_STATES",
    "DEFAULT_TENANT",
    "TERMINAL_JOB_STATES",
    "UNFINISHED_FILE_STATES",
    "ApiKey",
    "AuditEvent",
    "Base",
    "DeliveryState",
    "Export",
    "ExportState",
    "File",
    "FileState",
    "Job",
    "JobState",
    "Purge",
    "Segment",
    "Training",
    "TrainingState",
    "Tenant",
    "Webhook",
    "WebhookDelivery",
    "Worker",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware current UTC time (what every timestamp column stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

# Explicit constraint names, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


#: Where a job's files come from: uploads, a server folder, a bucket prefix, a list of URLs.
SOURCE_KINDS = ("upload", "folder", "s3", "urls")

#: The tenant the migration creates: jobs older than tenancy, and the first admin key, belong to it.
DEFAULT_TENANT = "default"


class Tenant(Base):
    """Who owns jobs: every API key belongs to one tenant, every job to its key's tenant.

    The quota columns override the ``AER_TENANT_*`` defaults for this tenant when set.
    """

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    max_active_jobs: Mapped[int | None]
    max_files_per_job: Mapped[int | None]
    max_stored_mb: Mapped[int | None]

    def __repr__(self) -> str:
        return f"<Tenant {self.id}>"


class ApiKey(Base):
    """An API key: only the SHA-256 of its secret is stored, found by its visible prefix."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("prefix"), Index(None, "tenant_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    #: Space-separated scopes (``read``, ``submit``, ``admin``).
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} {self.tenant_id} {self.scopes!r}>"


class Job(Base):
    """One submission: uploaded files, a folder on the shared volume, a bucket prefix or URLs."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JobState), name="state"),
        CheckConstraint(_in("source_kind", SOURCE_KINDS), name="source_kind"),
        Index(None, "state", "created_at"),
        Index(None, "created_at"),
        Index(None, "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: No foreign key to ``tenants``: see migration 0004 (tenants are never deleted).
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    #: Bytes of uploaded audio the job holds (counted against its tenant's storage quota).
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(24), default=JobState.QUEUED, server_default="queued")
    source_kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    options: Mapped[dict] = mapped_column(JSONType, default=dict)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(100))
    enumerated: Mapped[bool] = mapped_column(default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    #: Enumeration attempts and lease, so the sweep can restart a lost enumeration.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The :class:`Worker` task that holds the enumeration (its heartbeat keeps the claim).
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Where the job's end is POSTed (``api.store.webhooks``), and the key that signs it.
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_secret: Mapped[str | None] = mapped_column(String(100))

    files: Mapped[list[File]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.state}>"


class File(Base):
    """One audio file of a job, with its result (or error) once processed."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("job_id", "rel_path"),
        CheckConstraint(_in("state", FileState), name="state"),
        Index(None, "job_id", "state"),
        Index(None, "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    rel_path: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(
        String(16), default=FileState.PENDING, server_default="pending"
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The :class:`Worker` task that last claimed the file.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    duration_s: Mapped[float | None]
    sample_rate: Mapped[int | None]
    channels: Mapped[int | None]
    label: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None]
    probabilities: Mapped[dict | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    model_version: Mapped[str | None] = mapped_column(String(100))
    #: Timeline summary (``core.timeline.summarize``, plus ``channels`` for split jobs).
    summary: Mapped[dict | None] = mapped_column(JSONType)
    #: How many ``segments`` rows the result has (None until done).
    segment_count: Mapped[int | None]
    #: How far the audio lies from the model's training data: the share of training rows
    #: nearer (0..1; ``core.ood``), None for a model without a distance scorer.
    ood: Mapped[float | None] = mapped_column(Double)
    #: A label a person gave the file after reading its result (training data for a custom
    #: model), and when.
    corrected_label: Mapped[str | None] = mapped_column(String(100))
    corrected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Seconds the worker spent analysing the file (decoding included).
    processing_s: Mapped[float | None] = mapped_column(Double)

    job: Mapped[Job] = relationship(back_populates="files")
    segments: Mapped[list[Segment]] = relationship(
        back_populates="file", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<File {self.id} {self.rel_path!r} {self.state}>"


class Segment(Base):
    """One classified stretch of one channel of a file (times in seconds from its start).

    ``job_id`` repeats the file's job, so a job's segments are read in id order by one index
    (the CSV export) without a join. A file's segments are inserted in one statement in
    (channel, start_s) order, so within a file id order is timeline order.
    """

    __tablename__ = "segments"
    __table_args__ = (
        # Also the index of file_id (its first column): a file's segments in timeline order.
        UniqueConstraint("file_id", "channel", "start_s"),
        Index(None, "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    file_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("files.id", ondelete="CASCADE")
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    channel: Mapped[int]
    start_s: Mapped[float] = mapped_column(Double)
    end_s: Mapped[float] = mapped_column(Double)
    label: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Double)
    probabilities: Mapped[dict] = mapped_column(JSONType)
    ood: Mapped[float | None] = mapped_column(Double)
    corrected_label: Mapped[str | None] = mapped_column(String(100))
    corrected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    file: Mapped[File] = relationship(back_populates="segments")

    def __repr__(self) -> str:
        return f"<Segment {self.id} file {self.file_id} ch{self.channel} {self.start_s:.2f}s>"


class Training(Base):
    """Training of a custom model from people's labels: queued, run by a worker, polled."""

    __tablename__ = "trainings"
    __table_args__ = (
        CheckConstraint(_in("state", TrainingState), name="state"),
        Index(None, "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The tenant whose labels train the model, and who alone may use it.
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(
        String(16), default=TrainingState.QUEUED, server_default="queued"
    )
    #: Where the labels come from: ``{"jobs": [...]}`` or ``{"manifest": path}``.
    source: Mapped[dict] = mapped_column(JSONType)
    #: ``recipe``, ``add_ravdess``, ``holdout``.
    options: Mapped[dict] = mapped_column(JSONType, default=dict)
    #: The last stage reported while training: ``{"stage", "done", "total"}``.
    progress: Mapped[dict | None] = mapped_column(JSONType)
    model_version: Mapped[str | None] = mapped_column(String(100))
    metrics: Mapped[dict | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Webhook(Base):
    """A tenant's subscription: every event in ``events`` of the tenant's jobs is POSTed to
    ``url``, signed with ``secret``."""

    __tablename__ = "webhooks"
    __table_args__ = (Index(None, "tenant_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(JSONType)
    secret: Mapped[str] = mapped_column(String(100))
    #: Finished files between two ``job.progress`` events (when subscribed to them).
    progress_every: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One attempt to POST one event to one receiver (``delivery`` groups the attempts).

    ``state``: ``pending`` (due at ``due_at``), ``sending``, ``delivered`` (2xx), ``failed``
    (attempt ``attempt + 1`` is due at ``next_retry_at``) or ``gave_up`` (the last attempt).
    ``job_id`` has no foreign key: the record outlives a deleted job.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        UniqueConstraint("delivery", "attempt"),
        Index(None, "state", "due_at"),
        Index(None, "job_id", "id"),
        Index(None, "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery: Mapped[str] = mapped_column(String(32))
    webhook_id: Mapped[str | None] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    #: The signing key (the subscription's or the job's), kept so a deleted job's event still
    #: goes out signed; never shown by the API.
    secret: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.event} #{self.attempt} {self.state}>"


class Export(Base):
    """One export of a job's results to a bucket (``api.store.exports``): ``queued`` until a
    worker takes it, ``running``, then ``done`` (``bytes`` written to ``object_key`` of the
    destination's bucket) or ``failed`` (``error``). Deleted with its job."""

    __tablename__ = "exports"
    __table_args__ = (
        CheckConstraint(_in("state", EXPORT_STATES), name="state"),
        Index(None, "job_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    #: The ``s3://`` address asked for (a folder ending in ``/``, or an object).
    destination: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    #: ``granularity``, ``precision`` and ``uncertain_below`` of the table written.
    options: Mapped[dict] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(
        String(16), default=ExportState.QUEUED, server_default="queued"
    )
    #: The key of the object written, in the destination's bucket.
    object_key: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Export {self.id} {self.format} {self.state}>"


#: What a purge deletes: a job's audio, its extracted zips, or the job and its results.
PURGE_KINDS = ("audio", "extracted", "results")


class Purge(Base):
    """One run of the retention task that deleted something: what, when, how much."""

    __tablename__ = "purges"
    __table_args__ = (CheckConstraint(_in("kind", PURGE_KINDS), name="kind"), Index(None, "ran_at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Jobs that ended before this were purged (None: not a matter of age, e.g. extractions).
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    jobs: Mapped[int]
    files: Mapped[int]
    bytes: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"<Purge {self.kind} {self.jobs} jobs at {self.ran_at}>"


class AuditEvent(Base):
    """One thing a key did to a tenant's data: created, downloaded, relabelled, trained,
    cancelled or deleted what, and when (``api.store.audit``)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    tenant_id: Mapped[str] = mapped_column(String(64))
    #: The key that acted (None for the service itself, e.g. the retention task).
    key_id: Mapped[int | None]
    key_prefix: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSONType)


class Worker(Base):
    """One running task of a worker process, kept alive by the process's heartbeat thread.

    Claims of files and enumerations name their task's row: when ``last_seen`` falls behind by
    ``AER_WORKER_TIMEOUT_S`` (the process died, or the task ended without finishing), the sweep
    takes the work back without waiting for the lease.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    task: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Worker {self.id} {self.task}>"
