"""Several machines, played by separate processes: the API (gunicorn, as in docker-compose.yml)
and two Celery workers (distinct node names), each with its own private ``AER_DATA_DIR`` that
the others never see. They share only what separate hosts would share: PostgreSQL, Redis and a
bucket on an S3-compatible server (moto in server mode, a process speaking S3's HTTP protocol),
``AER_STORAGE_URL=s3://<bucket>/aer``. The model folder is read-only code of the image, as in
the containers.

On one machine a process could still open another's folder by its absolute path, so the test
checks that none did: every file row names an object of the bucket, and no data folder holds
audio afterwards.

PostgreSQL only: a SQLite database is a file, so every process would have to open one shared
folder, which is what a multi-host deployment has not got. Without ``AER_TEST_POSTGRES_URL`` the
module skips like the other PostgreSQL tests (CI sets it and fails instead of skipping).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gunicorn
import pytest
from sqlalchemy import select

from api.cli.client import AERClient, ClientError, Multipart
from api.store.states import TERMINAL_JOB_STATES
from tests.auth import create_key
from tests.conftest import (
    FIXTURE_CLIPS,
    REPO,
    WorkerProcess,
    chunk_tasks_done,
    flush_redis,
    fresh_database,
    worker_process,
)
from tests.servers import free_port

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
#: Suffixes of what must never land in a data folder: audio, archives, fetched temp files.
AUDIO_SUFFIXES = {".flac", ".wav", ".mp3", ".ogg", ".m4a", ".zip"}
#: Bound of every wait, so a stuck stack fails the test instead of hanging it.
TIMEOUT_S = 120
#: The receiver answers 500 this many times, then 200.
FAILURES = 3

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(len(CLIPS) < 9, reason="fixture clips missing"),
]


# --- the webhook receiver ----------------------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP receiver in a thread: 500 for its first :data:`FAILURES` POSTs, then 200."""

    url: str
    posts: list[dict] = field(default_factory=list)


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                receiver.posts.append({"headers": dict(self.headers), "body": json.loads(body)})
                status = 500 if len(receiver.posts) <= FAILURES else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The running processes, their private data folders, and a client of the API."""

    settings: object  # this test process's settings (its own data folder)
    bucket: str
    client: AERClient
    workers: list[WorkerProcess]
    data_dirs: dict[str, Path]
    api_log: Path

    def report_sections(self) -> list[tuple[str, str]]:
        """The logs a failing test shows (see ``pytest_runtest_makereport`` in conftest)."""
        sections = [("API log (last 100 lines)", _tail(self.api_log, 100))]
        for worker in self.workers:
            sections.append((f"worker {worker.node} log (last 150 lines)", worker.log_tail(150)))
        return sections


def _tail(path: Path, lines: int) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def api_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """The API under gunicorn (the command of docker-compose.yml), on a free port; yields its
    URL once ``/healthz`` answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    cmd += ["--threads", "4", "--timeout", "120", "api.web.app:create_app()"]
    if gunicorn.version_info >= (27,):
        cmd.append("--no-control-socket")  # else a socket in $HOME, shared by every gunicorn
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                assert proc.poll() is None, f"the API exited:\n{_tail(log_path, 60)}"
                with contextlib.suppress(Exception):
                    AERClient(url, timeout=2).health()  # 200 (no worker yet: "degraded")
                    break
                assert time.monotonic() < deadline, (
                    f"the API did not answer:\n{_tail(log_path, 60)}"
                )
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def stack(redis_server, s3_server, tmp_path_factory) -> Iterator[Stack]:
    """PostgreSQL, Redis, a bucket; the API and two workers, each with a private data folder."""
    from api.store.db import dispose_engines, upgrade
    from api.store.objects import s3_client
    from api.store.settings import load_settings
    from core.registry import DEFAULT_MODELS_DIR

    root = tmp_path_factory.mktemp("multihost")
    bucket = f"aer-multi-{os.urandom(5).hex()}"
    s3_client().create_bucket(Bucket=bucket)
    flush_redis(redis_server)
    with fresh_database("postgres", root) as database_url:
        upgrade(database_url)
        shared = {
            "AER_DATABASE_URL": database_url,
            "AER_BROKER_URL": redis_server,
            "AER_STORAGE_URL": f"s3://{bucket}/aer",
            "AER_ALLOWED_BUCKETS": f"{bucket}/inbox",
            "AER_MODELS_DIR": os.environ.get("AER_MODELS_DIR") or str(DEFAULT_MODELS_DIR),
            "AER_CHUNK_SIZE": "2",
            "AER_SWEEP_INTERVAL_S": "1",
            "AER_TASK_TIME_LIMIT_S": "120",
            "AER_WEBHOOK_ALLOW_PRIVATE": "true",
            "AER_WEBHOOK_RETRY_BASE_S": "0.2",
            "AER_WEBHOOK_TIMEOUT_S": "5",
        }
        dirs = {name: root / name for name in ("test", "api", "worker-a", "worker-b")}
        logs = root / "logs"
        for folder in [*dirs.values(), logs]:
            folder.mkdir()

        def env(name: str) -> dict[str, str]:
            return {**shared, "AER_DATA_DIR": str(dirs[name])}

        settings = load_settings(env("test"))
        with contextlib.ExitStack() as running:
            url = running.enter_context(api_process(env("api"), logs / "api.log"))
            workers = [  # one embedded beat (the sweep, the purge), like compose's one beat
                running.enter_context(
                    worker_process(
                        settings,
                        env(name),
                        logs / f"{name}.log",
                        beat=name == "worker-a",
                        name=name,
                    )
                )
                for name in ("worker-a", "worker-b")
            ]
            client = AERClient(url, api_key=create_key(settings), timeout=60)
            del dirs["test"]  # the test's own folder is not a host's
            yield Stack(settings, bucket, client, workers, dirs, logs / "api.log")
        dispose_engines()


# --- helpers -------------------------------------------------------------------------------------


def finish(client: AERClient, job_id: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while (job := client.job(job_id))["state"] not in TERMINAL_JOB_STATES:
        assert time.monotonic() < deadline, f"job not finished after {TIMEOUT_S} s: {job}"
        time.sleep(0.2)
    return job


def assert_each_file_done_once(stack: Stack, job: dict, names: set[str]) -> None:
    """Every file done, claimed once (attempts == 1), one result each, under its name, and
    read by the workers from an object of the bucket (never from a path on the API's disk)."""
    from api.store.db import session_scope
    from api.store.tables import File

    assert job["state"] == "succeeded", job
    n = len(names)
    assert job["counts"] == {"total": n, "pending": 0, "running": 0, "done": n, "failed": 0}
    with session_scope(stack.settings) as session:
        rows = session.execute(
            select(File.rel_path, File.path, File.state, File.attempts, File.error).where(
                File.job_id == job["id"]
            )
        ).all()
    assert sorted(row.rel_path for row in rows) == sorted(names)
    assert {(row.state, row.attempts, row.error) for row in rows} == {("done", 1, None)}
    local = [row.path for row in rows if not row.path.startswith(f"s3://{stack.bucket}/")]
    assert local == [], "files the workers would read from another host's disk"
    results = list(stack.client.results(job["id"]))
    assert sorted(r["file"] for r in results) == sorted(names)
    assert all(r["state"] == "done" and r["label"] for r in results)


def audio_in(folder: Path) -> list[str]:
    """Audio, archives and fetched temp files left anywhere under ``folder``."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file()
        and (path.suffix.lower() in AUDIO_SUFFIXES or path.name.startswith("fetch-"))
    )


# --- the test ------------------------------------------------------------------------------------


def test_uploads_and_a_bucket_prefix_across_hosts_without_shared_disk(stack, tmp_path):
    """An upload job (clips and a zip) and a bucket-prefix job finish on two workers that share
    no folder with the API: every file done exactly once, both workers busy, no audio left in
    any data folder; the upload job's webhook fails three times and the fourth is delivered."""
    from api.store.objects import s3_client

    direct, zipped, in_bucket = CLIPS[:3], CLIPS[3:5], CLIPS[5:9]
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for clip in zipped:
            zf.write(clip, f"batch/{clip.name}")
    s3 = s3_client()
    for clip in in_bucket:
        s3.upload_file(str(clip), stack.bucket, f"inbox/calls/{clip.name}")
    s3.put_object(Bucket=stack.bucket, Key="inbox/calls/notes.txt", Body=b"not audio")
    s3.upload_file(str(CLIPS[0]), stack.bucket, "elsewhere/other.flac")  # outside the prefix

    with webhook_receiver() as receiver:
        files = [("files", clip) for clip in direct] + [("files", archive)]
        body = Multipart([("callback_url", receiver.url)], files)
        upload = stack.client.request("POST", "/jobs", body=body)
        source = f"s3://{stack.bucket}/inbox/calls/"
        prefix = stack.client.submit_source(source, pattern="*.flac")
        with pytest.raises(ClientError) as refused:  # outside AER_ALLOWED_BUCKETS
            stack.client.submit_source(f"s3://{stack.bucket}/elsewhere/")
        assert refused.value.status == 403, refused.value

        upload_job = finish(stack.client, upload["id"])
        prefix_job = finish(stack.client, prefix["id"])
        assert_each_file_done_once(
            stack,
            upload_job,
            {c.name for c in direct} | {f"more.zip/batch/{c.name}" for c in zipped},
        )
        assert_each_file_done_once(stack, prefix_job, {c.name for c in in_bucket})

        done = {w.node: chunk_tasks_done(stack.settings, w.node) for w in stack.workers}
        assert all(done.values()), f"chunks run per worker: {done}"

        deadline = time.monotonic() + TIMEOUT_S
        while True:
            page = stack.client.request("GET", f"/jobs/{upload['id']}/webhooks")["items"]
            if any(d["state"] == "delivered" for d in page):
                break
            assert time.monotonic() < deadline, f"webhook not delivered: {page}"
            time.sleep(0.2)

    assert [(d["attempt"], d["state"], d["status_code"]) for d in page] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "failed", 500),
        (4, "delivered", 200),
    ]
    assert len({d["delivery"] for d in page}) == 1  # four attempts of one delivery
    assert len(receiver.posts) == FAILURES + 1
    assert {p["body"]["event"] for p in receiver.posts} == {"job.succeeded"}
    assert {p["body"]["job"]["id"] for p in receiver.posts} == {upload["id"]}

    left = {name: audio_in(folder) for name, folder in stack.data_dirs.items()}
    assert left == {name: [] for name in stack.data_dirs}, "audio went through a data folder"
