"""Settings: defaults, parsing, validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.store.settings import ConfigError, Settings, load_settings
from core.registry import DEFAULT_MODELS_DIR

REPO = Path(__file__).resolve().parents[2]


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.data_dir == tmp_path.resolve() / ".aer"
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / '.aer' / 'aer.db'}"
    assert s.broker_url is None
    assert s.celery_broker_url == f"redis+socket://{tmp_path.resolve() / '.aer' / 'redis.sock'}"
    assert s.allowed_roots == ()
    assert s.models_dir == DEFAULT_MODELS_DIR
    assert s.uploads_dir == s.data_dir / "uploads"
    assert (s.default_model, s.max_attempts, s.chunk_size) == ("default", 3, 16)
    assert s.task_soft_time_limit_s < s.task_time_limit_s < s.lease_s
    assert s.task_time_limit_s < s.visibility_timeout_s


def test_every_variable_is_read(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    env = {
        "AER_DATA_DIR": str(tmp_path / "data"),
        "AER_DATABASE_URL": "postgresql+psycopg://u@db:5432/aer",
        "AER_BROKER_URL": "redis://broker:6379/0",
        "AER_ALLOWED_ROOTS": os.pathsep.join([str(roots[0]), "", str(roots[1])]),
        "AER_MAX_UPLOAD_MB": "100",
        "AER_MAX_EXTRACT_MB": "300",
        "AER_MAX_FILES_PER_JOB": "50",
        "AER_MAX_DURATION_S": "12.5",
        "AER_DEFAULT_MODEL": "ravdess8",
        "AER_MODELS_DIR": str(tmp_path / "models"),
        "AER_CUSTOM_MODELS_DIR": str(tmp_path / "custom"),
        "AER_RAVDESS_DIR": str(tmp_path / "ravdess"),
        "AER_CHUNK_SIZE": "8",
        "AER_TASK_TIME_LIMIT_S": "100",
        "AER_VISIBILITY_TIMEOUT_S": "500",
        "AER_LEASE_S": "130",
        "AER_MAX_ATTEMPTS": "5",
        "AER_SWEEP_INTERVAL_S": "7.5",
        "AER_HEARTBEAT_S": "2",
        "AER_WORKER_TIMEOUT_S": "9",
        "AER_CHANNEL_NAMES": "1=caller,0=advisor",
        "AER_UNCERTAIN_BELOW": "0.4",
        "AER_OOD_ABOVE": "0.95",
        "AER_MAX_ARCHIVE_EXTRACT_MB": "150",
        "AER_MAX_ARCHIVE_DEPTH": "1",
        "AER_MAX_JSON_KB": "64",
        "AER_MAX_JSON_DEPTH": "8",
        "AER_MIN_FREE_MB": "10",
        "AER_RETENTION_DAYS": "30",
        "AER_RESULTS_RETENTION_DAYS": "90.5",
        "AER_KEEP_EXTRACTED": "false",
        "AER_SECRET_KEY": "s" * 40,
        "AER_BOOTSTRAP_KEY": "aer_abcd1234_" + "k" * 43,
        "AER_COOKIE_SECURE": "true",
        "AER_TENANT_MAX_ACTIVE_JOBS": "3",
        "AER_TENANT_MAX_FILES_PER_JOB": "20",
        "AER_TENANT_MAX_STORED_MB": "1000",
        "AER_WEBHOOK_ALLOW_PRIVATE": "true",
        "AER_WEBHOOK_TIMEOUT_S": "3",
        "AER_WEBHOOK_MAX_ATTEMPTS": "4",
        "AER_WEBHOOK_RETRY_BASE_S": "0.5",
        "AER_WEBHOOK_RETRY_MAX_S": "60",
        "AER_LOG_FORMAT": "json",
        "AER_LOG_LEVEL": "DEBUG",
        "AER_WORKER_PING_TIMEOUT_S": "0.25",
        "AER_METRICS_TOKEN": "t" * 32,
        "AER_STORAGE_URL": "s3://aer-data/prod/",
        "AER_ALLOWED_BUCKETS": "calls, archive/2026",
        "AER_ALLOWED_URL_HOSTS": "media.example.com",
        "AER_MAX_FETCH_MB": "250",
        "AER_FETCH_TIMEOUT_S": "5",
    }
    s = load_settings(env)
    assert s == Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql+psycopg://u@db:5432/aer",
        broker_url="redis://broker:6379/0",
        allowed_roots=tuple(roots),
        models_dir=tmp_path / "models",
        custom_models_dir=tmp_path / "custom",
        ravdess_dir=tmp_path / "ravdess",
        default_model="ravdess8",
        max_upload_mb=100,
        max_extract_mb=300,
        max_files_per_job=50,
        max_duration_s=12.5,
        chunk_size=8,
        task_time_limit_s=100,
        visibility_timeout_s=500,
        lease_s=130,
        max_attempts=5,
        sweep_interval_s=7.5,
        heartbeat_s=2.0,
        worker_timeout_s=9.0,
        channel_names=((0, "advisor"), (1, "caller")),
        uncertain_below=0.4,
        ood_above=0.95,
        max_archive_extract_mb=150,
        max_archive_depth=1,
        max_json_kb=64,
        max_json_depth=8,
        min_free_mb=10,
        retention_days=30,
        results_retention_days=90.5,
        keep_extracted=False,
        secret_key="s" * 40,
        bootstrap_key="aer_abcd1234_" + "k" * 43,
        cookie_secure=True,
        tenant_max_active_jobs=3,
        tenant_max_files_per_job=20,
        tenant_max_stored_mb=1000,
        webhook_allow_private=True,
        webhook_timeout_s=3.0,
        webhook_max_attempts=4,
        webhook_retry_base_s=0.5,
        webhook_retry_max_s=60.0,
        log_format="json",
        log_level="DEBUG",
        worker_ping_timeout_s=0.25,
        metrics_token="t" * 32,
        storage_url="s3://aer-data/prod",
        allowed_buckets=("calls", "archive/2026"),
        allowed_url_hosts=("media.example.com",),
        max_fetch_mb=250,
        fetch_timeout_s=5.0,
    )
    assert s.celery_broker_url == "redis://broker:6379/0"
    # every AER_ variable the README documents is one load_settings reads
    assert set(env) == {f"AER_{name.upper()}" for name in Settings.model_fields}


def test_reads_os_environ_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("AER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AER_CHUNK_SIZE", "3")
    s = load_settings()
    assert (s.data_dir, s.chunk_size) == (tmp_path.resolve(), 3)


def test_derived_limits_follow_the_task_time_limit(tmp_path):
    s = load_settings({"AER_DATA_DIR": str(tmp_path), "AER_TASK_TIME_LIMIT_S": "7200"})
    assert s.visibility_timeout_s > 7200 and s.lease_s > 7200
    assert s.task_soft_time_limit_s < 7200


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AER_CHUNK_SIZE", "abc", "AER_CHUNK_SIZE: Input should be a valid integer"),
        ("AER_CHUNK_SIZE", "0", "AER_CHUNK_SIZE: Input should be greater than or equal to 1"),
        ("AER_MAX_ATTEMPTS", "2.5", "AER_MAX_ATTEMPTS: Input should be a valid integer"),
        ("AER_MAX_FILES_PER_JOB", "-3", "AER_MAX_FILES_PER_JOB: Input should be greater than"),
        ("AER_MAX_DURATION_S", "long", "AER_MAX_DURATION_S: Input should be a valid number"),
        ("AER_SWEEP_INTERVAL_S", "0", "AER_SWEEP_INTERVAL_S: Input should be greater than 0"),
        ("AER_SWEEP_INTERVAL_S", "nan", "AER_SWEEP_INTERVAL_S: Input should be a finite number"),
        ("AER_UNCERTAIN_BELOW", "2", "AER_UNCERTAIN_BELOW: Input should be less than or equal"),
        ("AER_CHANNEL_NAMES", "agent", "AER_CHANNEL_NAMES: must look like '0=agent,1=customer'"),
    ],
)
def test_bad_values_are_named(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings({"AER_DATA_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [("AER_BOOTSTRAP_KEY", "aer_short_secret-value"), ("AER_SECRET_KEY", "too-short-secret")],
)
def test_bad_secrets_are_named_but_not_shown(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name) as raised:
        load_settings({"AER_DATA_DIR": str(tmp_path), name: value})
    assert value not in str(raised.value)


@pytest.mark.parametrize("name", ["AER_VISIBILITY_TIMEOUT_S", "AER_LEASE_S"])
def test_timeouts_must_outlast_the_task_time_limit(tmp_path, name):
    env = {"AER_DATA_DIR": str(tmp_path), "AER_TASK_TIME_LIMIT_S": "600", name: "600"}
    with pytest.raises(ConfigError, match=f"{name} \\(600\\) must be longer than"):
        load_settings(env)
    assert isinstance(ConfigError("x"), ValueError)


def test_worker_timeout_must_outlast_the_heartbeat(tmp_path):
    env = {"AER_DATA_DIR": str(tmp_path), "AER_HEARTBEAT_S": "10", "AER_WORKER_TIMEOUT_S": "10"}
    with pytest.raises(ConfigError, match="AER_WORKER_TIMEOUT_S \\(10.0\\) must be longer than"):
        load_settings(env)


def test_settings_are_frozen(tmp_path):
    s = load_settings({"AER_DATA_DIR": str(tmp_path)})
    with pytest.raises(ValidationError):
        s.chunk_size = 2


def test_only_config_reads_the_environment():
    """No settings are read from the environment outside api/store/settings.py."""
    layers = ("api/store", "api/web")
    mine = [p for d in layers for p in sorted((REPO / d).rglob("*.py")) if p.name != "settings.py"]
    mine += sorted((REPO / "worker").glob("*.py")) + sorted((REPO / "migrations").rglob("*.py"))
    for path in mine:
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text, path


def test_configuration_doc_is_generated_from_the_class():
    """docs/configuration.md holds the table the settings class generates, current."""
    from api.store.settings import markdown_page

    assert (REPO / "docs" / "configuration.md").read_text() == markdown_page()
