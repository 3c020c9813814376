"""Webhooks, metrics and logs on a real worker: a receiver that fails three times gets the
fourth attempt with a valid signature, ``/metrics`` moves when a job runs, and the API's and the
worker's JSON logs carry the request and job ids."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.store import webhooks
from api.store.logs import configure_logging
from tests.auth import authenticated, bearer, create_key
from tests.conftest import FIXTURE_CLIPS
from tests.openapi_check import check_responses

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))[:2]
FAILURES = 3


@pytest.fixture(scope="module")
def settings_env(settings_env):
    """The worker's settings, plus: private receivers allowed (ours is on 127.0.0.1), retries
    within a second, JSON logs."""
    return settings_env | {
        "AER_WEBHOOK_ALLOW_PRIVATE": "true",
        "AER_WEBHOOK_RETRY_BASE_S": "0.2",
        "AER_WEBHOOK_RETRY_MAX_S": "1",
        "AER_WEBHOOK_MAX_ATTEMPTS": "6",
        "AER_WEBHOOK_TIMEOUT_S": "5",
        "AER_LOG_FORMAT": "json",
    }


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers 500 to the first ``failures`` of them, then 204."""

    daemon_threads = True

    def __init__(self, failures: int = FAILURES) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures = failures
        self.posts: list[tuple[dict[str, str], bytes, str]] = []
        self.lock = threading.Lock()

    def events(self) -> list[str]:
        with self.lock:
            return [headers[webhooks.EVENT_HEADER] for headers, _, _ in self.posts]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/aer?x=1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.posts.append((dict(self.headers), body, self.path))
            status = 500 if len(self.server.posts) <= self.server.failures else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving(failures: int) -> Iterator[Receiver]:
    server = Receiver(failures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(FAILURES) as server:
        yield server


@pytest.fixture(scope="module")
def client(settings, celery_worker):
    from api.store.db import get_engine
    from api.web.app import create_app

    app = authenticated(check_responses(create_app(settings)), create_key(settings))
    app.config["TESTING"] = True
    yield app.test_client()
    get_engine(settings.database_url).dispose()


@pytest.fixture
def json_logs(settings) -> Iterator[io.StringIO]:
    """The test process's logs as JSON lines in a buffer (the root logger restored after)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(settings.model_copy(update={"log_format": "json"}), stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def metrics(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    values = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def submit(client, allowed_root, name: str, **extra) -> dict:
    folder = allowed_root / f"{name}-{uuid.uuid4().hex[:8]}"  # one per database kind
    folder.mkdir()
    for clip in CLIPS:
        shutil.copy(clip, folder / clip.name)
    response = client.post("/api/v1/jobs", json={"folder": str(folder), **extra})
    assert response.status_code == 202, response.data
    return response.get_json()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_receiver_failing_three_times_gets_the_fourth_signed(
    client, allowed_root, receiver, wait_for_job
):
    job = submit(client, allowed_root, "hooked", callback_url=receiver.url)
    secret = job["callback_secret"]
    assert wait_for_job(job["id"]).state == "succeeded"
    wait_until(lambda: len(receiver.posts) > FAILURES, 60, "the fourth attempt")
    # Every attempt carries the same event, each signed over its own timestamp.
    bodies = set()
    for headers, body, path in receiver.posts:
        assert path == "/hooks/aer?x=1"
        timestamp = int(headers[webhooks.TIMESTAMP_HEADER])
        message = f"{timestamp}.".encode() + body
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[webhooks.SIGNATURE_HEADER], f"sha256={expected}")
        assert abs(time.time() - timestamp) < 600
        assert headers[webhooks.EVENT_HEADER] == "job.succeeded"
        bodies.add(body)
    assert len(bodies) == 1
    payload = json.loads(bodies.pop())
    assert payload["event"] == "job.succeeded" and payload["job"]["id"] == job["id"]
    assert payload["job"]["counts"] == {"total": len(CLIPS), "done": len(CLIPS), "failed": 0}
    # The record: three failed attempts, each with its next retry, then the delivered one.
    page = wait_until(
        lambda: (
            (body := client.get(f"/api/v1/jobs/{job['id']}/webhooks").get_json())["items"][-1][
                "state"
            ]
            == "delivered"
            and body
        ),
        30,
        "the delivered attempt to be recorded",
    )
    attempts = [(d["attempt"], d["state"], d["status_code"]) for d in page["items"]]
    assert attempts == [(1, "failed", 500), (2, "failed", 500), (3, "failed", 500),
                        (4, "delivered", 204)]  # fmt: skip
    assert all(d["next_retry_at"] for d in page["items"][:3])
    assert page["items"][3]["next_retry_at"] is None
    assert len({d["delivery"] for d in page["items"]}) == 1
    assert all(d["error"] == "HTTP 500" for d in page["items"][:3])
    time.sleep(0.5)
    assert len(receiver.posts) == FAILURES + 1  # delivered: nothing more is sent


def test_progress_events_every_n_files(client, allowed_root, wait_for_job):
    with serving(failures=0) as hooks:
        job = submit(client, allowed_root, "progress", callback_url=hooks.url, progress_every=1)
        assert job["options"]["callback_progress_every"] == 1
        wait_for_job(job["id"])
        wait_until(lambda: "job.succeeded" in hooks.events(), 60, "the job's end")
        time.sleep(0.5)  # a progress attempt sent with the end would arrive about now
        events = hooks.events()
        bodies = [json.loads(body) for _, body, _ in hooks.posts]
    progress = [b for b in bodies if b["event"] == "job.progress"]
    assert progress, events
    # One event per multiple reached: finished counts never repeat.
    finished = [b["job"]["counts"]["done"] + b["job"]["counts"]["failed"] for b in progress]
    assert len(set(finished)) == len(finished) and all(1 <= n <= len(CLIPS) for n in finished)
    assert events.count("job.succeeded") == 1


def test_metrics_move_when_a_job_runs(client, allowed_root, wait_for_job):
    before = metrics(client)
    assert before[("aer_workers_alive", ())] >= 1
    assert {("queue", "aer.chunks")} <= {k[1][0] for k in before if k[0] == "aer_queue_depth"}
    job = submit(client, allowed_root, "measured")
    wait_for_job(job["id"])
    after = metrics(client)

    def delta(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("aer_jobs", state="succeeded") == 1
    assert delta("aer_files", state="done") == len(CLIPS)
    assert delta("aer_files", state="failed") == 0
    assert delta("aer_processing_seconds") > 0 and delta("aer_audio_seconds") > 0
    assert after[("aer_processing_seconds_per_audio_second", ())] > 0
    assert after[("aer_broker_up", ())] == 1


def test_failed_attempts_show_in_metrics(client, allowed_root, wait_for_job):
    before = metrics(client)[("aer_webhook_failed_attempts", ())]
    closed = Receiver()  # bound, never served: the connection is refused... or hangs; close it
    url = closed.url
    closed.server_close()
    job = submit(client, allowed_root, "unheard", callback_url=url)
    wait_for_job(job["id"])
    wait_until(
        lambda: metrics(client)[("aer_webhook_failed_attempts", ())] >= before + 2,
        60,
        "failed attempts in the metrics",
    )
    items = client.get(f"/api/v1/jobs/{job['id']}/webhooks").get_json()["items"]
    assert items[0]["status_code"] is None and "Connection" in items[0]["error"]


def test_health_reports_live_workers(client):
    body = client.get("/api/v1/healthz").get_json()
    assert body["status"] == "ok" and body["checks"]["workers"] == {"ok": True, "status": "ok"}
    assert "@" not in json.dumps(body)  # no worker host names in the public body


def test_json_logs_carry_request_and_job_ids(
    client, allowed_root, json_logs, celery_worker, wait_for_job
):
    folder = allowed_root / f"logged-{uuid.uuid4().hex[:8]}"  # one per database kind
    folder.mkdir()
    shutil.copy(CLIPS[0], folder / CLIPS[0].name)
    response = client.post(
        "/api/v1/jobs", json={"folder": str(folder)}, headers={"X-Request-ID": "req-42.a"}
    )
    assert response.headers["X-Request-ID"] == "req-42.a"
    job_id = response.get_json()["id"]
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    submitted = [entry for entry in lines if entry["message"].startswith("job submitted")]
    assert [(e["request_id"], e["job_id"]) for e in submitted] == [("req-42.a", job_id)]
    assert {"time", "level", "logger"} <= set(submitted[0])
    # A request without an id gets one; an unsafe one is replaced.
    fresh = client.get(f"/api/v1/jobs/{job_id}", headers={"X-Request-ID": "bad id; x"})
    generated = fresh.headers["X-Request-ID"]
    assert len(generated) == 32 and generated != "bad id; x"
    access = [json.loads(line) for line in json_logs.getvalue().splitlines()][-1]
    assert (access["request_id"], access["job_id"]) == (generated, job_id)
    # The worker's log (AER_LOG_FORMAT=json) carries the job id on what it did for the job.
    wait_for_job(job_id)

    def worker_lines() -> list[dict]:
        entries = []
        for line in celery_worker.log().splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries

    finished = wait_until(
        lambda: [e for e in worker_lines() if e["message"] == f"job {job_id} finished"],
        30,
        "the worker's log line",
    )
    assert finished[0]["job_id"] == job_id and finished[0]["level"] == "INFO"
    assert all(e.get("job_id") in (None, job_id) for e in worker_lines() if job_id in e["message"])


def test_metrics_take_the_metrics_token_or_an_admin_key(make_app, api_settings):
    token = "m" * 40
    app = make_app(metrics_token=token)  # its clients send an admin key by default
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", headers=bearer(token)).status_code == 200
    assert client.get("/metrics", headers=bearer("m" * 39 + "x")).status_code == 401
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    reader = create_key(api_settings, scopes=("read",), name="reader")
    assert client.get("/metrics", headers=bearer(reader)).status_code == 403
    # Without a token configured, only admin keys read the metrics.
    plain = make_app().test_client()
    assert plain.get("/metrics", headers=bearer(token)).status_code == 401
