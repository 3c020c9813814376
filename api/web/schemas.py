"""Typed requests and responses of the HTTP API (pydantic).

Request models validate what a client sends (through :mod:`api.web.spec`, which turns a
validation error into the API's 422 JSON error); response models describe what each endpoint
answers. Both generate the OpenAPI 3.1 document, so the document cannot drift from the code:
``tests/service/test_openapi.py`` validates real responses of every endpoint against it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from api.store.audit import ACTIONS
from api.store.formats import FORMATS
from api.store.jobs import CHANNEL_MODES, SEGMENTATIONS
from api.store.receivers import MAX_URL
from api.store.tables import (
    SOURCE_KINDS,
    DeliveryState,
    ExportState,
    FileState,
    JobState,
    TrainingState,
)
from api.store.webhooks import END_EVENTS, EVENTS, PROGRESS_OPTION

ChannelMode = Literal[CHANNEL_MODES]  # type: ignore[valid-type]
Segmentation = Literal[SEGMENTATIONS]  # type: ignore[valid-type]
Fraction = float  # documented bounds are set per field
MAX_CURSOR = 2**62

# --- requests -------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Query(_Request):
    """A query string: an empty value (``?label=``) counts as absent."""

    @model_validator(mode="before")
    @classmethod
    def _drop_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v not in ("", None)}
        return data


class JobOptions(_Request):
    """Options of a job, shared by uploads and folder jobs."""

    model: str | None = Field(
        None, min_length=1, description="registry model name; the server's default when absent"
    )
    channels: ChannelMode = Field(
        CHANNEL_MODES[0], description="mix the channels down, or analyse each on its own"
    )
    segmentation: Segmentation = Field(
        SEGMENTATIONS[0], description="speech segments (vad), fixed 8 s windows, or whole files"
    )
    callback_url: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_URL,
        description="http(s) URL the job's end is POSTed to, signed with the "
        "`callback_secret` of the 202 answer (see docs/webhooks.md)",
    )

    progress_every: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="with `callback_url`: also POST `job.progress` every this many finished files",
    )

    @model_validator(mode="after")
    def _progress_needs_callback(self) -> JobOptions:
        if self.progress_every is not None and not self.callback_url:
            raise ValueError("progress_every needs a callback_url")
        return self

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    name: str | None = Field(
        None, max_length=200, description="a name to find the job by (the dashboard's search)"
    )

    @field_validator("model")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip() if value else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    def as_options(self) -> dict:
        """The job's ``options`` column (``name`` only when given; the callback URL has its
        own column)."""
        options = {"channels": self.channels, "segmentation": self.segmentation}
        if self.name:
            options["name"] = self.name
        if self.progress_every:
            options[PROGRESS_OPTION] = self.progress_every
        return options


#: Fields of a job submission besides its files or folder.
OPTION_FIELDS = tuple(JobOptions.model_fields)


class UploadForm(JobOptions):
    """``multipart/form-data``: audio files and zip archives, plus the job's options."""

    files: list[Any] = Field(
        default_factory=list,
        description="audio files and/or .zip archives (repeat the field)",
        json_schema_extra={"items": {"type": "string", "format": "binary"}},
    )


#: Most URLs one job may list (a tenant's files-per-job quota may allow fewer).
MAX_URLS = 100_000


class JobRequest(JobOptions):
    """A job over files that need no upload: exactly one of ``folder`` (a folder on the server,
    inside ``AER_ALLOWED_ROOTS``; ``admin`` scope), ``source`` (a bucket prefix allowed by
    ``AER_ALLOWED_BUCKETS``) or ``urls`` (https URLs on hosts of ``AER_ALLOWED_URL_HOSTS``).
    The API only checks the addresses; the workers list the folder or prefix and fetch the
    files, each of which fails alone when it cannot be read."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"source": "s3://calls/2026-12/", "pattern": "*.wav"},
                {"urls": ["https://media.example.com/calls/a.wav"], "channels": "split"},
                {"folder": "/data/calls/2026-12", "recursive": False},
            ]
        }
    )

    folder: str | None = Field(
        None, min_length=1, description="absolute path on the server (admin scope)"
    )
    source: str | None = Field(
        None,
        min_length=6,
        max_length=1100,
        description="`s3://bucket/prefix/`: every audio object under the prefix",
    )
    urls: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_URLS,
        description="https URLs of audio files, one file each (duplicates count once)",
    )
    recursive: StrictBool = Field(
        True, description="folder or source: also the files in sub-folders (deeper keys)"
    )
    pattern: str | None = Field(
        None,
        description="folder or source: file name pattern such as *.wav (no folders); "
        "default: audio file extensions",
    )

    @field_validator("folder", "source")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip() if value is not None else None

    @field_validator("source")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError("must be an s3://bucket/prefix/ address")
        return value

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        urls = [url.strip() for url in value]
        if not all(urls) or any(len(url) > MAX_URL for url in urls):
            raise ValueError(f"URLs must be non-empty and at most {MAX_URL} characters")
        return list(dict.fromkeys(urls))  # duplicates once, in their first place

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value):
            raise ValueError("must be a file name pattern such as *.wav (no folders)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JobRequest:
        given = [name for name in ("folder", "source", "urls") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of folder, source or urls")
        if self.urls is not None and {"pattern", "recursive"} & self.model_fields_set:
            raise ValueError("pattern and recursive apply to a folder or source, not to urls")
        return self

    def options(self) -> JobOptions:
        """The job options of this request."""
        return JobOptions(
            model=self.model,
            channels=self.channels,
            segmentation=self.segmentation,
            name=self.name,
            callback_url=self.callback_url,
            progress_every=self.progress_every,
        )


class JobListQuery(_Query):
    """``GET /jobs``: page-number pagination, optionally one state."""

    page: int = Field(1, ge=1, le=1_000_000)
    size: int = Field(50, ge=1, le=500)
    state: JobState | None = None
    q: str | None = Field(
        None, max_length=200, description="part of the job's name, folder or id (any case)"
    )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


class UncertainQuery(_Query):
    uncertain_below: float | None = Field(
        None, ge=0.0, le=1.0, description="flag results less confident than this"
    )


class ResultQuery(UncertainQuery):
    """``GET /jobs/{id}/results``: cursor pagination (file id) and filters."""

    cursor: int | None = Field(None, ge=0, le=MAX_CURSOR)
    limit: int = Field(100, ge=1, le=1000)
    label: str | None = None
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    state: FileState | None = None

    def as_args(self, cursor: int) -> dict:
        """The query string of the page that follows ``cursor``."""
        args = self.model_dump(exclude_none=True, mode="json") | {"cursor": cursor}
        return args


class SegmentQuery(UncertainQuery):
    """``GET /jobs/{id}/files/{file_id}/segments``: cursor pagination (segment id)."""

    cursor: int | None = Field(None, ge=0, le=MAX_CURSOR)
    limit: int = Field(200, ge=1, le=1000)

    def as_args(self, cursor: int) -> dict:
        """The query string of the page that follows ``cursor``."""
        return self.model_dump(exclude_none=True, mode="json") | {"cursor": cursor}


class ExportQuery(UncertainQuery):
    """``GET /jobs/{id}/results.{csv,jsonl,parquet}``: one row per file (default) or per
    segment."""

    granularity: Literal["file", "segment"] = "file"
    precision: Literal["rounded", "full"] = Field(
        "rounded",
        description="rounded: probabilities and confidences to 4 decimals, seconds to 3; "
        "full: every digit stored",
    )


Format = Literal[FORMATS]  # type: ignore[valid-type]


class ExportRequest(_Request):
    """``POST /jobs/{id}/exports``: write a finished job's results to a bucket."""

    destination: str = Field(
        ...,
        min_length=6,
        max_length=1024,
        description="s3://bucket/prefix/ (a folder: the object is named aer-<job id>[-segments]"
        ".<format> under it) or s3://bucket/key (that object); the bucket must be in "
        "AER_ALLOWED_BUCKETS",
        examples=["s3://reports/aer/"],
    )
    format: Format = "csv"
    granularity: Literal["file", "segment"] = "file"
    precision: Literal["rounded", "full"] = "rounded"
    uncertain_below: Fraction | None = Field(
        None, ge=0.0, le=1.0, description="flag results less confident than this"
    )


Event = Literal[EVENTS]  # type: ignore[valid-type]


class WebhookRequest(_Request):
    """``POST /webhooks``: a subscription to job events."""

    url: str = Field(..., min_length=1, max_length=MAX_URL, description="http(s) receiver")
    events: list[Event] = Field(
        default_factory=lambda: list(END_EVENTS),
        min_length=1,
        description="default: every job's end (`job.progress` only when named)",
    )
    progress_every: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="finished files between two `job.progress` events (default 100)",
    )


class DeliveryQuery(_Query):
    """Cursor pagination of delivery attempts (attempt id)."""

    cursor: int | None = Field(None, ge=0, le=MAX_CURSOR)
    limit: int = Field(100, ge=1, le=500)


class LabelRequest(_Request):
    """A corrected label for a file or a segment of a finished job."""

    label: str = Field(..., min_length=1, max_length=100, examples=["frustrated"])


class TrainingRequest(_Request):
    """Train a custom model from corrected labels of finished jobs, or from a manifest CSV
    (``path,label[,speaker]``) on the server inside ``AER_ALLOWED_ROOTS`` (admin)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="model name")
    jobs: list[str] | None = Field(None, min_length=1, max_length=100)
    manifest: str | None = Field(None, min_length=1)
    recipe: str | None = Field(None, description="a training preset; default: the default model's")
    add_ravdess: StrictBool = Field(False, description="add RAVDESS clips of the same labels")
    holdout: float = Field(0.25, ge=0.1, le=0.5, description="share held out for the card")

    @model_validator(mode="after")
    def _one_source(self) -> TrainingRequest:
        if (self.jobs is None) == (self.manifest is None):
            raise ValueError("give exactly one of jobs or manifest")
        return self


# --- responses ------------------------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Response):
    code: str = Field(..., description="stable machine-readable code")
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(_Response):
    """Every error answer."""

    error: ErrorDetail


class JobSource(_Response):
    kind: Literal[SOURCE_KINDS]  # type: ignore[valid-type]


class JobModel(_Response):
    name: str
    version: str | None


class JobCounts(_Response):
    total: int
    pending: int
    running: int
    done: int
    failed: int


class JobLinks(_Response):
    self: str
    results: str
    csv: str


class DomainSummary(_Response):
    """How much of a job's audio lies outside what its model was trained on."""

    ood_above: float | None = Field(..., description="ood score above which a file is off-domain")
    scored: int = Field(..., description="files with an ood score")
    out_of_domain: int
    share: float | None
    warning: bool = Field(..., description="a large share of the job is off-domain")


class Job(_Response):
    """A job with its file counts, progress and timings (``domain`` on ``GET /jobs/{id}``)."""

    id: str
    state: JobState
    source: JobSource
    options: dict[str, Any]
    model: JobModel
    counts: JobCounts
    percent: float
    files_per_second: float | None
    eta_s: float | None = Field(description="unknown (null) while files wait for recovery")
    recovering: int = Field(
        description="running files whose worker was lost: the sweep will queue them again"
    )
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    domain: DomainSummary | None = None
    links: JobLinks
    callback_url: str | None = None
    callback_secret: str | None = Field(
        None, description="the key that signs the job's webhooks: in the 202 answer only"
    )


class PageLinks(_Response):
    next: str | None
    prev: str | None


class JobPage(_Response):
    items: list[Job]
    page: int
    size: int
    total: int
    links: PageLinks


class MostNegative(_Response):
    channel: int
    channel_name: str
    start_s: float
    end_s: float
    label: str
    score: float


class ChannelSummary(_Response):
    dominant: str | None
    shares: dict[str, float]
    speech_s: float | None
    silence_s: float | None
    duration_s: float | None
    n_segments: int | None
    most_negative: MostNegative | None


class NamedChannelSummary(ChannelSummary):
    channel: int
    channel_name: str


class Summary(ChannelSummary):
    """A file's timeline summary; ``channels`` for split-channel jobs."""

    channels: list[NamedChannelSummary] | None = None


class ResultLinks(_Response):
    segments: str | None = None


class Label(_Response):
    """A corrected label (None: cleared)."""

    job_id: str
    file_id: int
    segment_id: int | None = None
    label: str | None
    corrected_at: str | None


class Result(_Response):
    """One file's result (label and probabilities None when it failed or is not done)."""

    id: int
    file: str
    state: FileState
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    label: str | None
    confidence: float | None
    uncertain: bool | None
    ood: float | None = Field(
        ...,
        description="how far the audio lies from the model's training data: the share of "
        "training rows nearer (0..1); None for a model without a distance scorer",
    )
    probabilities: dict[str, float]
    attempts: int
    error: str | None
    error_code: str | None
    processed_at: str | None
    model_version: str | None
    segment_count: int | None
    summary: Summary | None
    corrected_label: str | None
    links: ResultLinks


class NextLink(_Response):
    next: str | None


class ResultPage(_Response):
    job_id: str
    job_state: JobState
    labels: list[str]
    uncertain_below: float
    items: list[Result]
    next_cursor: str | None
    links: NextLink


class SegmentItem(_Response):
    id: int
    channel: int
    channel_name: str
    start_s: float
    end_s: float
    label: str
    confidence: float
    uncertain: bool
    ood: float | None
    probabilities: dict[str, float]
    corrected_label: str | None


class SegmentLinks(_Response):
    results: str
    next: str | None


class SegmentPage(_Response):
    job_id: str
    file_id: int
    file: str
    state: FileState
    segment_count: int | None
    labels: list[str]
    uncertain_below: float
    items: list[SegmentItem]
    next_cursor: str | None
    links: SegmentLinks


class ModelInfo(_Response):
    """A model of the registry (no server paths); ``available: false`` with a ``reason`` when its
    files fail the checks of loading (checksum, versions, trusted types): jobs refuse it."""

    name: str
    version: str | None = None
    labels: list[str] | None = None
    feature_set: str | None = None
    preset: str | None = None
    metrics: dict[str, Any] | None = None
    created: str | None = None
    default: bool
    available: bool
    reason: str | None = None


class ModelList(_Response):
    items: list[ModelInfo]
    default: str


class HealthCheck(_Response):
    """One part: ``ok`` or ``degraded``; ``error`` (the driver's message) only for admins."""

    ok: bool
    status: Literal["ok", "degraded"]
    error: str | None = None


class Health(_Response):
    """``ok`` when the database and the broker answer and a worker is alive; ``degraded`` when
    no worker answers (jobs are accepted and wait); ``unavailable`` (503) names the part."""

    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, HealthCheck]
    error: ErrorDetail | None = None


class TrainingProgress(_Response):
    stage: str
    done: int
    total: int


class TrainingLinks(_Response):
    self: str
    model: str | None


class Training(_Response):
    """A custom-model training, polled like a job."""

    id: str
    name: str
    state: TrainingState
    source: dict[str, Any]
    options: dict[str, Any]
    progress: TrainingProgress | None
    model_version: str | None
    metrics: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    links: TrainingLinks


class ModelDetail(ModelInfo):
    """A model with its card (Markdown), when it has one."""

    card: str | None = None


# --- API keys ------------------------------------------------------------------------------------


class KeyCreateRequest(_Request):
    """``POST /keys``: a new key, for the caller's tenant unless ``tenant`` names another."""

    name: str = Field(..., min_length=1, max_length=100)
    scopes: list[Literal["read", "submit", "admin"]] = Field(..., min_length=1)
    tenant: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="created when new"
    )
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="never when absent")


class KeyListQuery(_Query):
    """``GET /keys``: optionally one tenant's keys only."""

    tenant: str | None = Field(None, max_length=64)


class KeyInfo(_Response):
    """An API key as listed: never its secret."""

    id: int
    prefix: str = Field(..., description="the visible start of the key, `aer_<prefix>_…`")
    name: str
    tenant: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    last_used_at: str | None = Field(..., description="to the minute")
    revoked_at: str | None
    active: bool


class KeyList(_Response):
    items: list[KeyInfo]


class KeyCreated(KeyInfo):
    """The new key, with its secret: shown once, never again."""

    key: str


# --- audit log -----------------------------------------------------------------------------------


class AuditQuery(_Query):
    """``GET /audit``: newest first, ``cursor`` (an event id) for older ones."""

    cursor: int | None = Field(None, ge=0, le=MAX_CURSOR)
    limit: int = Field(100, ge=1, le=500)
    action: Literal[ACTIONS] | None = None  # type: ignore[valid-type]
    tenant: str | None = Field(None, max_length=64, description="another tenant's log")


class AuditEvent(_Response):
    id: int
    at: str
    tenant: str
    key_id: int | None
    key_prefix: str | None
    action: str
    target_kind: str
    target_id: str
    detail: dict[str, Any] | None


class AuditPage(_Response):
    items: list[AuditEvent]
    next_cursor: str | None
    links: NextLink


class Webhook(_Response):
    """A subscription; ``secret`` only in the answer that created it."""

    id: str
    url: str
    events: list[Event]
    progress_every: int | None
    created_at: str
    secret: str | None = Field(None, description="the signing key: shown once, at creation")


class WebhookList(_Response):
    items: list[Webhook]


class Delivery(_Response):
    """One attempt to POST one event to one receiver."""

    id: int
    delivery: str = Field(..., description="the id shared by the attempts of one event")
    webhook_id: str | None = Field(None, description="the subscription; null: the job's callback")
    job_id: str | None
    event: Event
    url: str
    attempt: int
    state: DeliveryState
    status_code: int | None
    error: str | None
    created_at: str
    due_at: str
    attempted_at: str | None
    next_retry_at: str | None


class DeliveryPage(_Response):
    items: list[Delivery]
    next: str | None


class ExportLinks(_Response):
    self: str
    job: str


class Export(_Response):
    """A bucket export of a job's results: ``queued``, ``running``, then ``done`` (``bytes``
    written to ``object``) or ``failed`` (``error`` says why)."""

    id: str
    job_id: str
    state: ExportState
    destination: str
    object: str = Field(..., description="the s3:// address of the object written")
    format: Format
    options: dict[str, Any] = Field(..., description="granularity, precision, uncertain_below")
    bytes: int | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    links: ExportLinks


class ExportList(_Response):
    items: list[Export]
