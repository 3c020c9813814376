"""Service settings: the one place AER reads environment variables.

Every variable has the prefix ``AER_`` and is a field of :class:`Settings`, a pydantic-settings
class that parses and validates it; an empty variable counts as unset. The API, the workers and
the CLI all receive a :class:`Settings` or call :func:`load_settings`. Nothing is read at
import time. ``python -m api.store.settings --markdown`` prints the table of ``docs/``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import AERError

PREFIX = "AER_"
#: File name of the embedded Redis socket under the data directory.
EMBEDDED_REDIS_SOCKET = "redis.sock"
#: ``AER_CHANNEL_NAMES`` when unset: a stereo call's agent on the left, customer on the right.
DEFAULT_CHANNEL_NAMES = ((0, "agent"), (1, "customer"))
#: Longest channel name, and the highest channel index that can be named.
MAX_CHANNEL_NAME = 64
MAX_CHANNEL_INDEX = 255
#: Settings whose values never appear in an error message.
SECRET_FIELDS = frozenset({"secret_key", "bootstrap_key", "metrics_token"})
#: What an API key looks like: ``aer_<8 character prefix>_<secret of 32+ URL-safe characters>``.
API_KEY_PATTERN = re.compile(r"aer_([a-z0-9]{8})_([A-Za-z0-9_-]{32,200})")


class ConfigError(AERError, ValueError):
    """An ``AER_*`` environment variable has a value AER cannot use."""

    code = "config_error"


#: The mapping :func:`load_settings` reads instead of ``os.environ``, while it builds settings.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("aer_environ", default=None)


class _MappingSource(EnvSettingsSource):
    """Environment variables read from a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Variable names are case-insensitive and empty values unset, as in Settings' config.
        return {name.lower(): value for name, value in self._environ.items() if value}


def _default_models_dir() -> Path:
    from core.registry import DEFAULT_MODELS_DIR  # imported late: it pulls in scikit-learn

    return DEFAULT_MODELS_DIR


class Settings(BaseSettings):
    """Validated service configuration, one field per ``AER_<FIELD>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    data_dir: Path = Field(
        Path(".aer"),
        description="uploads, the SQLite database, the embedded Redis socket, the beat schedule",
    )
    database_url: str = Field(
        "",
        description="`sqlite:///…` or `postgresql+psycopg://user:pass@host/db`; "
        "default `sqlite:///<data dir>/aer.db`",
    )
    broker_url: str | None = Field(
        None,
        description="e.g. `redis://host:6379/0`; unset, `aer serve` starts Redis on "
        "`<data dir>/redis.sock`",
    )
    allowed_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), description="`:`-separated folders that folder jobs may read (none: refused)"
    )
    storage_url: str = Field(
        "",
        description="where uploads, extracted archives and custom models are kept: unset, "
        "folders of the data dir; `s3://bucket/prefix`, an S3-compatible bucket (endpoint, "
        "region and credentials from the usual `AWS_*` variables, e.g. `AWS_ENDPOINT_URL_S3`)",
    )
    allowed_buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="`,`-separated `bucket` or `bucket/prefix` that jobs may read "
        "(`s3://` sources) and export to (none: refused)",
    )
    allowed_url_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="`,`-separated host names URL jobs may fetch from over https "
        "(`*.example.com` for subdomains; none: refused)",
    )
    max_fetch_mb: int = Field(
        0,
        ge=0,
        description="largest file a worker fetches from a bucket or URL (fails `too_large` "
        "above); default AER_MAX_UPLOAD_MB",
    )
    fetch_timeout_s: float = Field(
        60.0, gt=0, allow_inf_nan=False, description="timeout of one read from a URL or bucket"
    )
    models_dir: Path = Field(
        default_factory=_default_models_dir, description="folder of model artifacts"
    )
    custom_models_dir: Path | None = Field(
        None,
        description="where custom models trained through the service are written (every "
        "worker must read it); default `<data dir>/models`; unused with a bucket "
        "`AER_STORAGE_URL` (models kept in it, copied to `<data dir>/cache/models`)",
    )
    ravdess_dir: Path | None = Field(
        None,
        description="a RAVDESS folder that custom trainings may add to the user's clips "
        "(`add_ravdess`; off by default); unset: the switch is refused",
    )
    default_model: str = Field(
        "default", description="model of jobs that name none (`default`: `models/default.txt`)"
    )
    max_upload_mb: int = Field(512, ge=1, description="largest request body (413 above)")
    max_extract_mb: int = Field(
        0, ge=0, description="most bytes the zips of one job may expand to; default 4 × upload"
    )
    max_archive_extract_mb: int = Field(
        0,
        ge=0,
        description="most bytes one zip (with the zips inside it) may expand to; "
        "default 2 × upload",
    )
    max_archive_depth: int = Field(
        2, ge=0, description="how deep zips inside zips are extracted; deeper ones fail as a file"
    )
    max_files_per_job: int = Field(10_000, ge=1, description="most files one job may list")
    max_json_kb: int = Field(
        4096, ge=1, description="largest JSON request body, checked before parsing (413 above)"
    )
    max_json_depth: int = Field(
        32, ge=1, description="deepest nesting of a JSON request body (400 `too_deep` above)"
    )
    min_free_mb: int = Field(
        64,
        ge=0,
        description="uploads stop with 507 `insufficient_storage` when the data "
        "directory's disk has less free space than this",
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="days after a job ends that its uploaded and extracted audio is deleted; "
        "unset: kept",
    )
    results_retention_days: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="days after a job ends that the job and its results are deleted; unset: kept",
    )
    keep_extracted: bool = Field(
        True,
        description="keep extracted zip contents after the job ends, until "
        "`AER_RETENTION_DAYS`, so that the dashboard's player can play calls that came in a "
        "zip; `false` deletes them when the job ends",
    )
    max_duration_s: float = Field(
        600.0, gt=0, description="longer files fail with `too_long`", allow_inf_nan=False
    )
    chunk_size: int = Field(16, ge=1, description="files per task")
    task_time_limit_s: int = Field(
        1800, ge=1, description="hard limit of one task (the soft limit is 10 % earlier)"
    )
    visibility_timeout_s: int = Field(
        0, ge=0, description="when Redis redelivers an unacknowledged task; default 2 × task limit"
    )
    lease_s: int = Field(
        0,
        ge=0,
        description="when the sweep takes back a file or listing even from a live but slow "
        "task; default task limit + max(60 s, 1/6)",
    )
    max_attempts: int = Field(3, ge=1, description="attempts per file before it fails `gave_up`")
    sweep_interval_s: float = Field(
        15.0, gt=0, allow_inf_nan=False, description="how often the sweep runs"
    )
    heartbeat_s: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="how often a busy worker process reports in"
    )
    worker_timeout_s: float = Field(
        40.0,
        gt=0,
        allow_inf_nan=False,
        description="a task not heard from for this long is gone: the sweep re-queues its work",
    )
    channel_names: Annotated[tuple[tuple[int, str], ...], NoDecode] = Field(
        DEFAULT_CHANNEL_NAMES,
        description="names of the channels of `split` jobs, e.g. `0=agent,1=customer`",
    )
    uncertain_below: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="results less confident than this are flagged `uncertain`; "
        "unset: the model's `suggested_uncertain_below`, else 0",
    )
    secret_key: str | None = Field(
        None,
        min_length=32,
        description="signs the web pages' session cookies; "
        "unset: generated once into `<data dir>/secret_key`",
    )
    bootstrap_key: str | None = Field(
        None,
        description="admin API key installed by `aer serve` / `aer db upgrade` "
        "(`aer_<8 a-z0-9>_<32+ characters>`, e.g. from `aer keys generate`); "
        "unset: a random one is printed once when no admin key exists",
    )
    cookie_secure: bool | None = Field(
        None,
        description="mark the session cookie `Secure`; unset: when the request came over https",
    )
    tenant_max_active_jobs: int = Field(
        100, ge=1, description="queued or running jobs per tenant (429 above)"
    )
    tenant_max_files_per_job: int = Field(
        0, ge=0, description="files per job of a tenant (413 above); default AER_MAX_FILES_PER_JOB"
    )
    tenant_max_stored_mb: int = Field(
        102_400, ge=1, description="uploaded audio a tenant's jobs may hold, in MB (413 above)"
    )

    webhook_allow_private: bool = Field(
        False,
        description="let webhook receivers resolve to private, loopback or link-local "
        "addresses (refused otherwise, at submission and again at each delivery)",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=300, allow_inf_nan=False, description="timeout of one webhook POST"
    )
    webhook_max_attempts: int = Field(
        15, ge=1, le=100, description="attempts per webhook delivery before it is given up"
    )
    webhook_retry_base_s: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="delay before the first retry; doubled each attempt, with jitter "
        "(the defaults retry for about a day)",
    )
    webhook_retry_max_s: float = Field(
        21_600.0, gt=0, allow_inf_nan=False, description="longest delay between two attempts"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per log line, with request and job ids"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the API's, `aer serve`'s and the workers' logs"
    )
    worker_ping_timeout_s: float = Field(
        1.0,
        gt=0,
        le=30,
        allow_inf_nan=False,
        description="how long `/healthz` and `/metrics` wait for workers to answer a ping",
    )
    metrics_token: str | None = Field(
        None,
        min_length=32,
        description="a bearer token that may read `/metrics` (for Prometheus); "
        "`/metrics` also takes an admin API key",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment (or the mapping given to :func:`load_settings`)."""
        environ = _ENVIRON.get()
        env = env_settings if environ is None else _MappingSource(settings_cls, environ)
        return init_settings, env

    ood_above: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="results whose audio's `ood` score is above this are flagged `uncertain` "
        "(off-domain); unset: the model's `suggested_ood_above`, else never",
    )

    @field_validator("data_dir", "models_dir", "custom_models_dir", "ravdess_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p for p in value.split(os.pathsep) if p.strip()]
        return tuple(Path(p).expanduser().resolve() for p in value)

    @field_validator("allowed_buckets", "allowed_url_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip().strip("/") for v in value.split(",") if v.strip().strip("/")]
        return tuple(value)

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
            raise ValueError("must be unset (local folders) or s3://bucket[/prefix]")
        return value.rstrip("/")

    @field_validator("bootstrap_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None and not API_KEY_PATTERN.fullmatch(value):
            raise ValueError("must look like aer_<8 of a-z0-9>_<32 or more of A-Za-z0-9_->")
        return value

    @field_validator("channel_names", mode="before")
    @classmethod
    def _channel_names(cls, value: Any) -> Any:
        return parse_channel_names(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        # Defaults that depend on other fields; frozen models are filled in once, here.
        limit = self.task_time_limit_s
        derived = {
            "database_url": self.database_url or f"sqlite:///{self.data_dir / 'aer.db'}",
            "custom_models_dir": self.custom_models_dir or self.data_dir / "models",
            "max_extract_mb": self.max_extract_mb or 4 * self.max_upload_mb,
            "max_archive_extract_mb": self.max_archive_extract_mb or 2 * self.max_upload_mb,
            "max_fetch_mb": self.max_fetch_mb or self.max_upload_mb,
            "tenant_max_files_per_job": self.tenant_max_files_per_job or self.max_files_per_job,
            "visibility_timeout_s": self.visibility_timeout_s or 2 * limit,
            "lease_s": self.lease_s or limit + max(60, limit // 6),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        # A message redelivered while its task still runs would be processed twice; a lease
        # shorter than the task would let the sweep hand a running file to a second worker.
        if self.worker_timeout_s <= self.heartbeat_s:
            raise ValueError(
                f"{PREFIX}WORKER_TIMEOUT_S ({self.worker_timeout_s}) must be longer than "
                f"{PREFIX}HEARTBEAT_S ({self.heartbeat_s})"
            )
        for name in ("visibility_timeout_s", "lease_s"):
            if getattr(self, name) <= limit:
                raise ValueError(
                    f"{PREFIX}{name.upper()} ({getattr(self, name)}) must be longer than "
                    f"{PREFIX}TASK_TIME_LIMIT_S ({limit})"
                )
        return self

    @property
    def uploads_dir(self) -> Path:
        """Folder holding one sub-folder of uploaded audio per job."""
        return self.data_dir / "uploads"

    @property
    def temp_dir(self) -> Path:
        """Private scratch folder of this process's host: fetched objects, staged extractions."""
        return self.data_dir / "tmp"

    @property
    def embedded_redis_socket(self) -> Path:
        """Unix socket of the embedded Redis (used when no broker URL is configured)."""
        return self.data_dir / EMBEDDED_REDIS_SOCKET

    @property
    def celery_broker_url(self) -> str:
        """The broker URL Celery uses: ``AER_BROKER_URL`` or the embedded Redis socket."""
        return self.broker_url or f"redis+socket://{self.embedded_redis_socket}"

    @property
    def task_soft_time_limit_s(self) -> int:
        """Soft limit: a chunk stops early and re-enqueues its rest before the hard kill."""
        return max(1, self.task_time_limit_s - max(1, self.task_time_limit_s // 10))

    def as_env(self) -> dict[str, str]:
        """The ``AER_*`` variables that make :func:`load_settings` rebuild these settings (how
        the embedded stack configures its worker processes)."""
        return {f"{PREFIX}{name.upper()}": _env_value(getattr(self, name)) for name in fields()}


def fields() -> list[str]:
    """The setting names, in declaration order (``AER_<NAME>`` each)."""
    return list(Settings.model_fields)


def parse_channel_names(raw: str) -> tuple[tuple[int, str], ...]:
    """``"0=agent,1=customer"`` as ``((0, "agent"), (1, "customer"))``, sorted by index."""
    names: dict[int, str] = {}
    for item in raw.split(","):
        index, sep, label = (part.strip() for part in item.partition("="))
        if not sep or not index.isdigit() or not label:
            raise ValueError(f"must look like '0=agent,1=customer', got {raw!r}")
        if int(index) > MAX_CHANNEL_INDEX or len(label) > MAX_CHANNEL_NAME:
            raise ValueError(
                f"channel indexes go up to {MAX_CHANNEL_INDEX} and names up to "
                f"{MAX_CHANNEL_NAME} characters, got {item.strip()!r}"
            )
        if int(index) in names or label in names.values():
            raise ValueError(f"names a channel or uses a name twice: {raw!r}")
        names[int(index)] = label
    return tuple(sorted(names.items()))


def _env_value(value: object) -> str:
    if value is None:
        return ""  # an empty variable reads as unset
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ",".join(f"{index}={label}" for index, label in value)
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return ",".join(value)  # buckets, hosts
    if isinstance(value, tuple):
        return os.pathsep.join(str(v) for v in value)  # folders
    return str(value)


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    if not error["loc"]:  # a check across fields: its message names the variables
        return ConfigError(str(error["msg"]).removeprefix("Value error, "))
    name = f"{PREFIX}{str(error['loc'][0]).upper()}"
    message = str(error["msg"]).removeprefix("Value error, ")
    secret = error["loc"][0] in SECRET_FIELDS
    got = "" if "got" in message or secret else f", got {error['input']!r}"
    return ConfigError(f"{name}: {message}{got}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Raises:
        ConfigError: a value is malformed or the time limits contradict each other; the
            message names the variable.
    """
    env = os.environ if environ is None else environ
    # Surrounding blanks are dropped, so that a blank variable reads as unset.
    token = _ENVIRON.set({k: v.strip() for k, v in env.items() if k.startswith(PREFIX)})
    try:
        return Settings()
    except ValidationError as exc:
        raise _config_error(exc) from None
    finally:
        _ENVIRON.reset(token)


DOC_INTRO = """# Configuration

Every setting is an `AER_*` environment variable, read in one place: the pydantic-settings
class `api.store.settings.Settings`. The API, the workers and the CLI take the same ones; an
empty variable counts as unset, and a bad value stops the process with a message naming the
variable. This page is generated from the class
(`python -m api.store.settings --markdown > docs/configuration.md`; a test checks it is current).
Tests also read `AER_TEST_POSTGRES_URL` (see the README).

"""


def markdown_page() -> str:
    """``docs/configuration.md``: an introduction and :func:`markdown_table`."""
    return DOC_INTRO + markdown_table()


def markdown_table() -> str:
    """The settings as a Markdown table (variable, default, meaning), generated from the class."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "the shipped `models/`"
        elif field.default in (None, "", 0, ()):
            default = "unset"
        else:
            default = f"`{_env_value(field.default)}`"
        rows.append(f"| `{PREFIX}{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m api.store.settings --markdown
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m api.store.settings --markdown")
    sys.stdout.write(markdown_page())
