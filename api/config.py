"""Service settings: the one place AER reads environment variables.

Every variable has the prefix ``AER_``. :func:`load_settings` parses and validates them into a
frozen :class:`Settings`; everything else (the Flask app, the Celery app, the tasks, the CLI)
receives that object or calls :func:`load_settings` itself. Nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import AERError

#: File name of the embedded Redis socket under the data directory.
EMBEDDED_REDIS_SOCKET = "redis.sock"
#: ``AER_CHANNEL_NAMES`` when unset: a stereo call's agent on the left, customer on the right.
DEFAULT_CHANNEL_NAMES = ((0, "agent"), (1, "customer"))
#: Longest channel name, and the highest channel index that can be named.
MAX_CHANNEL_NAME = 64
MAX_CHANNEL_INDEX = 255


class ConfigError(AERError, ValueError):
    """An ``AER_*`` environment variable has a value AER cannot use."""

    code = "config_error"


@dataclass(frozen=True)
class Settings:
    """Validated service configuration (see :func:`load_settings` for the variables)."""

    data_dir: Path
    database_url: str
    broker_url: str | None
    allowed_roots: tuple[Path, ...]
    models_dir: Path
    default_model: str = "default"
    max_upload_mb: int = 512
    max_extract_mb: int = 2048
    max_files_per_job: int = 10_000
    max_duration_s: float = 600.0
    chunk_size: int = 16
    task_time_limit_s: int = 1800
    visibility_timeout_s: int = 3600
    lease_s: int = 2100
    max_attempts: int = 3
    sweep_interval_s: float = 60.0
    #: ``(index, name)`` of the named channels of split-channel jobs, by index.
    channel_names: tuple[tuple[int, str], ...] = DEFAULT_CHANNEL_NAMES
    #: Results with a confidence below this are flagged ``uncertain``; None: the model's
    #: ``suggested_uncertain_below`` metadata, else 0.0 (never flagged).
    uncertain_below: float | None = None

    @property
    def uploads_dir(self) -> Path:
        """Folder holding one sub-folder of uploaded audio per job."""
        return self.data_dir / "uploads"

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


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _fraction(env: Mapping[str, str], name: str) -> float | None:
    """A number from 0 to 1, or None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {raw!r}")
    return value


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _channel_names(env: Mapping[str, str], name: str) -> tuple[tuple[int, str], ...]:
    """``"0=agent,1=customer"`` as ``((0, "agent"), (1, "customer"))``, sorted by index."""
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_CHANNEL_NAMES
    names: dict[int, str] = {}
    for item in raw.split(","):
        index, sep, label = (part.strip() for part in item.partition("="))
        if not sep or not index.isdigit() or not label:
            raise ConfigError(f"{name} must look like '0=agent,1=customer', got {raw!r}")
        if int(index) > MAX_CHANNEL_INDEX or len(label) > MAX_CHANNEL_NAME:
            raise ConfigError(
                f"{name}: channel indexes go up to {MAX_CHANNEL_INDEX} and names up to "
                f"{MAX_CHANNEL_NAME} characters, got {item.strip()!r}"
            )
        if int(index) in names or label in names.values():
            raise ConfigError(f"{name} names a channel or uses a name twice: {raw!r}")
        names[int(index)] = label
    return tuple(sorted(names.items()))


def _default_models_dir() -> Path:
    from core.registry import DEFAULT_MODELS_DIR  # imported late: it pulls in scikit-learn

    return DEFAULT_MODELS_DIR


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Raises:
        ConfigError: a value is malformed or the time limits contradict each other.
    """
    env = os.environ if environ is None else environ
    data_dir = Path(_str(env, "AER_DATA_DIR") or ".aer").expanduser().resolve()
    roots = tuple(
        Path(p).expanduser().resolve()
        for p in (env.get("AER_ALLOWED_ROOTS") or "").split(os.pathsep)
        if p.strip()
    )
    models_dir = _str(env, "AER_MODELS_DIR")
    upload_mb = _int(env, "AER_MAX_UPLOAD_MB", Settings.max_upload_mb)
    time_limit = _int(env, "AER_TASK_TIME_LIMIT_S", Settings.task_time_limit_s)
    settings = Settings(
        data_dir=data_dir,
        database_url=_str(env, "AER_DATABASE_URL") or f"sqlite:///{data_dir / 'aer.db'}",
        broker_url=_str(env, "AER_BROKER_URL"),
        allowed_roots=roots,
        models_dir=Path(models_dir).expanduser().resolve() if models_dir else _default_models_dir(),
        default_model=_str(env, "AER_DEFAULT_MODEL") or Settings.default_model,
        max_upload_mb=upload_mb,
        max_extract_mb=_int(env, "AER_MAX_EXTRACT_MB", 4 * upload_mb),
        max_files_per_job=_int(env, "AER_MAX_FILES_PER_JOB", Settings.max_files_per_job),
        max_duration_s=_float(env, "AER_MAX_DURATION_S", Settings.max_duration_s),
        chunk_size=_int(env, "AER_CHUNK_SIZE", Settings.chunk_size),
        task_time_limit_s=time_limit,
        visibility_timeout_s=_int(env, "AER_VISIBILITY_TIMEOUT_S", 2 * time_limit),
        lease_s=_int(env, "AER_LEASE_S", time_limit + max(60, time_limit // 6)),
        max_attempts=_int(env, "AER_MAX_ATTEMPTS", Settings.max_attempts),
        sweep_interval_s=_float(env, "AER_SWEEP_INTERVAL_S", Settings.sweep_interval_s),
        channel_names=_channel_names(env, "AER_CHANNEL_NAMES"),
        uncertain_below=_fraction(env, "AER_UNCERTAIN_BELOW"),
    )
    _check_limits(settings)
    return settings


def _check_limits(s: Settings) -> None:
    # A message redelivered while its task still runs would be processed twice; a lease shorter
    # than the task would let the sweep hand a file still being processed to a second worker.
    if s.visibility_timeout_s <= s.task_time_limit_s:
        raise ConfigError(
            f"AER_VISIBILITY_TIMEOUT_S ({s.visibility_timeout_s}) must be longer than "
            f"AER_TASK_TIME_LIMIT_S ({s.task_time_limit_s})"
        )
    if s.lease_s <= s.task_time_limit_s:
        raise ConfigError(
            f"AER_LEASE_S ({s.lease_s}) must be longer than "
            f"AER_TASK_TIME_LIMIT_S ({s.task_time_limit_s})"
        )
