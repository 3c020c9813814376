"""The HTTP API over a real migrated SQLite database and a real Redis (no worker).

Jobs submitted here stay ``queued``; result rows are written with :mod:`api.store.processing`,
the way the worker writes them, to test pagination, filters, counts and the CSV export.
"""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
import zipfile
from datetime import timedelta

import pytest
import redis
from sqlalchemy import event, func, select, update

from api.store import jobs, processing
from api.store.db import get_engine, session_scope
from api.store.queue import CONTROL_QUEUE
from api.store.tables import DEFAULT_TENANT, File, Job, utcnow
from core.predict import FilePrediction
from core.samples import demo_folder

FIXTURES = demo_folder()
CLIP = next(iter(sorted(FIXTURES.glob("*.flac"))), None)
WAV_HEADER = b"RIFF\x24\x00\x00\x00WAVEfmt "

pytestmark = pytest.mark.skipif(CLIP is None, reason="fixture clips missing")


# --- helpers -------------------------------------------------------------------------------------


def upload(client, *files: tuple[bytes, str], **form):
    data = {"files": [(io.BytesIO(content), name) for content, name in files], **form}
    return client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")


def error_code(response) -> str:
    assert response.is_json, response.data
    body = response.get_json()
    assert set(body["error"]) >= {"code", "message"}
    return body["error"]["code"]


@pytest.fixture(scope="module")
def labels(api_settings) -> list[str]:
    from core.errors import ModelError
    from core.registry import ModelRegistry

    registry = ModelRegistry(api_settings.models_dir)
    try:
        name = registry.resolve().stem
    except ModelError as exc:
        pytest.skip(f"no default model: {exc}")
    return list(next(e for e in registry.list() if e["name"] == name)["labels"])


@pytest.fixture
def seed_job(api_settings, labels):
    """``seed_job([(rel_path, label | None, confidence), ...], state=...) -> job id``: a job
    whose files already have results (label None = failed file)."""

    def seed(specs, *, model_name=None, enumerated=True, pending=0, ood=None) -> str:
        from core.registry import ModelRegistry

        name = model_name or ModelRegistry(api_settings.models_dir).resolve().stem
        with session_scope(api_settings) as s:
            job = jobs.create_job(
                s,
                source_kind="folder",
                source="/nowhere",
                options={},
                model_name=name,
                tenant_id=DEFAULT_TENANT,
            )
            entries = [(rel, f"/nowhere/{rel}") for rel, _, _ in specs]
            entries += [(f"pending-{i}.wav", f"/nowhere/p{i}.wav") for i in range(pending)]
            ids = processing.insert_files(
                s, job.id, entries, lease_until=utcnow() + timedelta(hours=1)
            )
            for file_id, (rel, label, conf) in zip(ids, specs, strict=False):
                probs = {lab: (conf if lab == label else (1 - conf) / (len(labels) - 1))
                         for lab in labels} if label else {}  # fmt: skip
                pred = FilePrediction(
                    path=rel,
                    label=label,
                    confidence=conf if label else None,
                    probabilities=probs,
                    duration_s=3.0,
                    sample_rate=16000,
                    channels=1,
                    error=None if label else "not audio",
                    error_code=None if label else "not_audio",
                )
                pred.ood = ood
                processing.record_result(s, file_id, pred, "test-version")
            if enumerated:
                processing.finish_enumeration(s, job.id)
            return job.id

    return seed


def queued_messages(redis_url: str, queue: str = CONTROL_QUEUE) -> list[bytes]:
    client = redis.Redis(unix_socket_path=redis_url.removeprefix("redis+socket://"))
    try:
        return client.lrange(queue, 0, -1)
    finally:
        client.close()


# --- POST /jobs: uploads -------------------------------------------------------------------------


def test_upload_is_accepted_before_any_decoding(client, api_settings, redis_server):
    corrupt = WAV_HEADER + b"\x00garbage" * 10
    response = upload(
        client,
        (CLIP.read_bytes(), CLIP.name),
        (corrupt, "broken.wav"),
        (b"PK\x05\x06" + b"\x00" * 18, "empty.zip"),
        channels="split",
        segmentation="fixed",
    )
    assert response.status_code == 202, response.data
    job = response.get_json()
    assert job["state"] == "queued"
    assert job["options"] == {"channels": "split", "segmentation": "fixed"}
    assert job["counts"]["total"] == 0
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    folder = api_settings.uploads_dir / job["id"]
    assert sorted(os.listdir(folder)) == sorted([CLIP.name, "broken.wav", "empty.zip"])
    assert (folder / CLIP.name).read_bytes() == CLIP.read_bytes()
    assert (folder / "broken.wav").read_bytes() == corrupt  # stored, not judged: the worker will
    assert not os.listdir(api_settings.uploads_dir / ".incoming")
    with session_scope(api_settings) as s:
        row = s.get(Job, job["id"])
        assert (row.source_kind, row.state, row.source) == ("upload", "queued", str(folder))
        assert s.scalar(select(func.count()).where(File.job_id == job["id"])) == 0
    assert any(job["id"].encode() in m for m in queued_messages(redis_server))


def test_upload_names_are_sanitized_and_unique(client, api_settings):
    wav = WAV_HEADER + b"\x00" * 32
    response = upload(
        client,
        (wav, "../../escape.wav"),
        (wav, "a/b/escape.wav"),
        (wav, "..\\..\\win.wav"),
        (wav, "..."),
        (wav, ".hidden.wav"),
        (wav, "Überweisung Kunde 通话.wav"),
    )
    assert response.status_code == 202, response.data
    folder = api_settings.uploads_dir / response.get_json()["id"]
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert len(names) == 6 and len(set(n.lower() for n in names)) == 6
    assert all(not n.startswith(".") and "/." not in n and ".." not in n for n in names)
    assert {"escape.wav", "a/b/escape.wav", "win.wav", "hidden.wav"} <= set(names)
    assert "Überweisung Kunde 通话.wav" in names  # names are kept, not transliterated
    assert not (api_settings.data_dir / "escape.wav").exists()
    assert not list(api_settings.data_dir.parent.glob("escape*"))


@pytest.mark.parametrize(
    ("content", "name", "accepted"),
    [
        (b"just some text\n", "notes.txt", False),
        (b"\x00\x01binary junk", "data.bin", False),
        (b"hello", "noext", False),
        (WAV_HEADER + b"\x00" * 8, "recording.dat", True),  # magic bytes say audio
        (b"fLaC\x00\x00\x00\x22", "noext", True),
        (b"not really", "clip.mp3", True),  # extension says audio: the worker judges
        (b"PK\x03\x04rest", "archive.bin", True),  # magic bytes say zip
        (b"RIFF....WAVE", "fake.zip", False),  # a .zip must be a zip
    ],
)
def test_plainly_not_audio_is_415(client, api_settings, content, name, accepted):
    before = client.get("/api/v1/jobs").get_json()["total"]
    response = upload(client, (CLIP.read_bytes(), CLIP.name), (content, name))
    if accepted:
        assert response.status_code == 202, response.data
        return
    assert response.status_code == 415
    assert error_code(response) == "not_audio"
    assert name in response.get_json()["error"]["message"]
    assert client.get("/api/v1/jobs").get_json()["total"] == before  # no job for that request
    assert not os.listdir(api_settings.uploads_dir / ".incoming")


def test_the_api_removes_stale_upload_parts_itself(client, api_settings):
    """With a bucket for storage no worker's sweep sees the API host's spool folder, so the API
    deletes parts left by a request that died with its process (at most once an hour)."""
    import time

    from api.store import uploads

    incoming = api_settings.uploads_dir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    stale, live = incoming / "part-stale", incoming / "part-live"
    stale.write_bytes(b"x"), live.write_bytes(b"y")
    old = time.time() - uploads.STALE_PART_S - 60
    os.utime(stale, (old, old))
    uploads._last_tidy.pop(api_settings.uploads_dir, None)
    assert upload(client, (WAV_HEADER, "a.wav")).status_code == 202
    assert not stale.exists() and live.exists()
    live.unlink()


def test_upload_over_the_size_limit_is_413(make_app, api_settings, tmp_path):
    from api.cli.client import Multipart

    client = make_app(max_upload_mb=1).test_client()
    big = tmp_path / "big.wav"
    big.write_bytes(WAV_HEADER + b"\x00" * (1024 * 1024))
    body = Multipart([], [("files", big)])  # streamed like the CLI sends it
    response = client.post("/api/v1/jobs", data=b"".join(body), content_type=body.content_type)
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    incoming = api_settings.uploads_dir / ".incoming"
    assert not incoming.exists() or not os.listdir(incoming)


def test_many_files_in_one_upload_hold_few_descriptors(client, api_settings, tmp_path):
    import resource

    from api.cli.client import Multipart

    n = 300
    for i in range(n):
        (tmp_path / f"clip-{i:03d}.wav").write_bytes(WAV_HEADER + bytes([i % 256]) * 64)
    body = Multipart([], [("files", p) for p in sorted(tmp_path.glob("*.wav"))])
    data = b"".join(body)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, open_now + 100), hard))
    try:
        response = client.post("/api/v1/jobs", data=data, content_type=body.content_type)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert response.status_code == 202, response.data
    folder = api_settings.uploads_dir / response.get_json()["id"]
    assert len(os.listdir(folder)) == n
    assert (folder / "clip-007.wav").read_bytes() == WAV_HEADER + bytes([7]) * 64


def test_zip_upload_is_saved_unopened(client, api_settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("inner/a.flac", CLIP.read_bytes())
    response = upload(client, (buffer.getvalue(), "batch.zip"))
    assert response.status_code == 202
    folder = api_settings.uploads_dir / response.get_json()["id"]
    assert os.listdir(folder) == ["batch.zip"]  # extraction is the worker's job


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"channels": "left"}, "channels"),
        ({"segmentation": "words"}, "segmentation"),
        ({"model": "no-such-model"}, "model"),
        ({"model": "../../etc/passwd"}, "model"),
        ({"model": "/abs/model.skops"}, "model"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_upload_parameters_are_422(client, form, field):
    response = upload(client, (CLIP.read_bytes(), CLIP.name), **form)
    assert response.status_code == 422, response.data
    assert field in response.get_json()["error"]["message"] or error_code(response) == (
        "model_not_found"
    )


def test_upload_without_files_is_422(client):
    response = client.post(
        "/api/v1/jobs", data={"model": "default"}, content_type="multipart/form-data"
    )
    assert response.status_code == 422
    assert "files" in response.get_json()["error"]["message"]


def test_named_model_is_recorded(client, api_settings):
    from core.registry import ModelRegistry

    name = ModelRegistry(api_settings.models_dir).resolve().stem
    response = upload(client, (CLIP.read_bytes(), CLIP.name), model=name)
    assert response.status_code == 202
    assert response.get_json()["model"]["name"] == name
    default = upload(client, (CLIP.read_bytes(), CLIP.name)).get_json()
    assert default["model"]["name"] == name  # "default" is resolved at submission


# --- POST /jobs: folders -------------------------------------------------------------------------


def test_folder_job_is_accepted_without_listing(client, api_root, api_settings):
    folder = api_root / "calls"
    (folder / "deep").mkdir(parents=True, exist_ok=True)
    (folder / "deep" / "a.wav").write_bytes(b"junk")
    response = client.post(
        "/api/v1/jobs", json={"folder": str(folder), "recursive": False, "pattern": "*.wav"}
    )
    assert response.status_code == 202, response.data
    body = response.get_json()
    assert body["state"] == "queued" and body["source"] == {"kind": "folder"}
    assert body["options"] == {
        "channels": "mix",
        "segmentation": "vad",
        "recursive": False,
        "pattern": "*.wav",
    }
    with session_scope(api_settings) as s:
        assert s.get(Job, body["id"]).source == str(folder)
        assert s.scalar(select(func.count()).where(File.job_id == body["id"])) == 0


def test_folder_outside_the_allowed_roots_is_refused(client, api_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = api_root / "sneaky-link"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    for folder in ("/etc", str(outside), str(api_root / ".." / "elsewhere"), str(link)):
        response = client.post("/api/v1/jobs", json={"folder": folder})
        assert response.status_code == 403, (folder, response.data)
        assert error_code(response) == "source_not_allowed"


def test_folder_jobs_are_refused_without_allowed_roots(make_app, api_root):
    response = (
        make_app(allowed_roots=())
        .test_client()
        .post("/api/v1/jobs", json={"folder": str(api_root)})
    )
    assert response.status_code == 403
    message = response.get_json()["error"]["message"]
    assert "none is set" in message  # says why, names the setting and how to allow the folder
    assert "AER_ALLOWED_ROOTS" in message and "--allow-root" in message


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"folder": "missing-subfolder"}, 422),
        ({}, 422),
        ({"folder": ""}, 422),
        ({"folder": 3}, 422),
        ({"folder": "ROOT", "recursive": "yes"}, 422),
        ({"folder": "ROOT", "pattern": "../*.wav"}, 422),
        ({"folder": "ROOT", "channels": "both"}, 422),
        ({"folder": "ROOT", "segmentation": 5}, 422),
        ({"folder": "ROOT", "model": "nope"}, 422),
        ({"folder": "ROOT", "extra": 1}, 422),
        (["ROOT"], 400),
    ],
)
def test_invalid_folder_requests(client, api_root, body, status):
    def fill(value):
        if value == "ROOT":
            return str(api_root)
        if value == "missing-subfolder":
            return str(api_root / "missing")
        return value

    body = (
        [fill(v) for v in body] if isinstance(body, list) else {k: fill(v) for k, v in body.items()}
    )
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == status, response.data
    error_code(response)


def test_malformed_json_is_400_and_other_bodies_415(client):
    response = client.post("/api/v1/jobs", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "bad_request"
    response = client.post("/api/v1/jobs", data="folder=/x", content_type="text/plain")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


# --- errors --------------------------------------------------------------------------------------


def test_unknown_job_and_route_are_json_404(client):
    for url in (
        "/api/v1/jobs/0123456789abcdef",
        "/api/v1/jobs/0123456789abcdef/results",
        "/api/v1/jobs/0123456789abcdef/results.csv",
        "/api/v1/nothing-here",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert error_code(response) in ("not_found", "job_not_found")
    assert client.delete("/api/v1/jobs/0123456789abcdef").status_code == 404


def test_wrong_method_is_json_405_with_allow(client):
    response = client.put("/api/v1/jobs")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


# --- GET /jobs -----------------------------------------------------------------------------------


def test_job_list_pages_and_filters(client, seed_job, api_settings):
    ids = [seed_job([("a.wav", None, 0.0)]) for _ in range(5)]
    with session_scope(api_settings) as s:
        jobs.cancel_job(s, ids[0], tenant_id=DEFAULT_TENANT)
    total = client.get("/api/v1/jobs").get_json()["total"]
    assert total >= 5
    seen, url = [], "/api/v1/jobs?size=2"
    while url:
        page = client.get(url).get_json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        url = page["links"]["next"]
    assert len(seen) == total == len(set(seen))
    assert seen.index(ids[-1]) < seen.index(ids[0])  # newest first
    cancelled = client.get("/api/v1/jobs?state=cancelled&size=500").get_json()
    assert ids[0] in [j["id"] for j in cancelled["items"]]
    assert {j["state"] for j in cancelled["items"]} == {"cancelled"}
    listed = {j["id"]: j for j in client.get("/api/v1/jobs?size=500").get_json()["items"]}
    assert listed[ids[1]]["counts"]["total"] == 1 and listed[ids[1]]["counts"]["failed"] == 1


@pytest.mark.parametrize("query", ["state=done", "page=0", "size=0", "size=501", "page=x"])
def test_job_list_rejects_bad_queries(client, query):
    response = client.get(f"/api/v1/jobs?{query}")
    assert response.status_code == 422
    assert error_code(response) == "invalid_parameters"


# --- GET /jobs/{id} ------------------------------------------------------------------------------


def test_job_counts_progress_and_rate(client, seed_job, api_settings, labels):
    job_id = seed_job(
        [("a.wav", labels[0], 0.9), ("b.wav", labels[1], 0.8), ("c.wav", None, 0.0)], pending=1
    )
    body = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert body["state"] == "queued"
    assert body["counts"] == {"total": 4, "pending": 1, "running": 0, "done": 2, "failed": 1}
    assert body["percent"] == 75.0
    assert body["files_per_second"] is None and body["eta_s"] is None
    with session_scope(api_settings) as s:
        processing.mark_job_running(s, job_id, "test-version")
        s.get(Job, job_id).started_at = utcnow() - timedelta(seconds=30)
    body = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert body["state"] == "running"
    assert body["model"]["version"] == "test-version"
    assert body["started_at"].endswith("Z") and body["finished_at"] is None
    assert body["files_per_second"] == pytest.approx(0.1, rel=0.05)
    assert body["eta_s"] == pytest.approx(10, rel=0.1)
    assert body["links"]["results"].endswith(f"/jobs/{job_id}/results")
    assert body["recovering"] == 0
    # The pending file's worker died holding it: no near finish is promised until the sweep
    # queues it again, and the list says the same.
    with session_scope(api_settings) as s:
        s.execute(
            update(File)
            .where(File.job_id == job_id, File.state == "pending")
            .values(state="running", attempts=1, claimed_by="a-dead-task")
        )
    body = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert (body["recovering"], body["eta_s"], body["percent"]) == (1, None, 75.0)
    listed = client.get("/api/v1/jobs?size=100").get_json()["items"]
    assert next(j for j in listed if j["id"] == job_id)["recovering"] == 1


def _jobs_with_ids(api_settings, *ids: str) -> None:
    with session_scope(api_settings) as s:
        for job_id in ids:
            jobs.create_job(
                s,
                source_kind="folder",
                source="/nowhere",
                options={},
                model_name="m",
                job_id=job_id,
                tenant_id="default",
            )


def test_every_job_path_takes_a_unique_id_prefix(client, api_settings):
    stem = uuid.uuid4().hex[:7]
    first, second = stem + "0" + "a" * 24, stem + "1" + "b" * 24
    _jobs_with_ids(api_settings, first, second)
    for path in ("", "/results", "/results.csv"):
        response = client.get(f"/api/v1/jobs/{stem}0{path}")
        assert response.status_code == 200, (path, response.data)
    assert client.get(f"/api/v1/jobs/{stem}0").get_json()["id"] == first
    assert client.get(f"/api/v1/jobs/{stem.upper()}1").get_json()["id"] == second
    assert client.get(f"/api/v1/jobs/{stem}0/results").get_json()["job_id"] == first
    assert client.get(f"/api/v1/jobs/{first}").get_json()["id"] == first
    assert client.get(f"/api/v1/jobs/{first.upper()}").get_json()["id"] == first
    response = client.get(f"/api/v1/jobs/{stem}")
    assert response.status_code == 409 and error_code(response) == "ambiguous_job_id"
    assert "several jobs" in response.get_json()["error"]["message"]
    for unknown in (stem[:5], f"{stem}2", f"{stem}0%", "zzzzzzzz", first + "0"):
        assert client.get(f"/api/v1/jobs/{unknown}").status_code == 404, unknown
    assert client.delete(f"/api/v1/jobs/{stem}1").status_code == 204
    assert client.get(f"/api/v1/jobs/{stem}").get_json()["id"] == first  # unique again


# --- POST /jobs/{id}/cancel ----------------------------------------------------------------------


def test_cancel_stops_the_job_and_keeps_its_results(client, seed_job, labels):
    job_id = seed_job([("a.wav", labels[0], 0.9)], pending=2)
    response = client.post(f"/api/v1/jobs/{job_id[:8]}/cancel")
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["id"] == job_id and body["state"] == "cancelled" and body["finished_at"]
    assert body["counts"]["done"] == 1
    assert client.get(f"/api/v1/jobs/{job_id}").get_json()["state"] == "cancelled"
    items = client.get(f"/api/v1/jobs/{job_id}/results").get_json()["items"]
    assert [r["file"] for r in items if r["state"] == "done"] == ["a.wav"]
    again = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.get_json()["finished_at"] == body["finished_at"]
    assert client.post("/api/v1/jobs/0123456789abcdef/cancel").status_code == 404


def test_cancel_leaves_an_ended_job_as_it_is(client, seed_job, labels, api_settings):
    job_id = seed_job([("a.wav", labels[0], 0.9)])
    with session_scope(api_settings) as s:
        s.get(Job, job_id).state = "succeeded"
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").get_json()["state"] == "succeeded"


# --- GET /jobs/{id}/results ----------------------------------------------------------------------


def test_results_cursor_pagination_covers_every_file_once(client, seed_job, labels):
    specs = [(f"f{i:02d}.wav", labels[i % 3] if i % 4 else None, 0.5 + i / 100) for i in range(11)]
    job_id = seed_job(specs)
    seen, url = [], f"/api/v1/jobs/{job_id}/results?limit=3"
    while url:
        page = client.get(url).get_json()
        assert len(page["items"]) <= 3
        seen += page["items"]
        url = page["links"]["next"]
        assert (url is None) == (page["next_cursor"] is None)
    assert [r["file"] for r in seen] == [rel for rel, _, _ in specs]
    first = seen[1]
    assert set(first) >= {
        "file", "duration_s", "sample_rate", "channels", "label", "confidence", "probabilities",
        "error", "error_code", "processed_at", "model_version",
    }  # fmt: skip
    assert set(first["probabilities"]) == set(labels)
    assert first["model_version"] == "test-version" and first["sample_rate"] == 16000
    failed = seen[0]
    assert failed["label"] is None and failed["error_code"] == "not_audio"


def test_results_filters(client, seed_job, labels):
    job_id = seed_job(
        [("a.wav", labels[0], 0.9), ("b.wav", labels[0], 0.4), ("c.wav", labels[1], 0.95),
         ("d.wav", None, 0.0)]
    )  # fmt: skip
    base = f"/api/v1/jobs/{job_id}/results"

    def files(query: str) -> list[str]:
        response = client.get(f"{base}?{query}")
        assert response.status_code == 200, response.data
        return [r["file"] for r in response.get_json()["items"]]

    assert files(f"label={labels[0]}") == ["a.wav", "b.wav"]
    assert files("min_confidence=0.9") == ["a.wav", "c.wav"]
    assert files(f"label={labels[0]}&min_confidence=0.5") == ["a.wav"]
    assert files("state=failed") == ["d.wav"]
    assert files("state=done&limit=1") == ["a.wav"]
    page = client.get(f"{base}?state=done&limit=1").get_json()
    assert "state=done" in page["links"]["next"]  # filters survive pagination


@pytest.mark.parametrize(
    "query", ["min_confidence=2", "min_confidence=high", "state=queued", "limit=0", "cursor=x"]
)
def test_results_reject_bad_queries(client, seed_job, query):
    job_id = seed_job([("a.wav", None, 0.0)])
    response = client.get(f"/api/v1/jobs/{job_id}/results?{query}")
    assert response.status_code == 422
    assert error_code(response) == "invalid_parameters"


# --- GET /jobs/{id}/results.csv ------------------------------------------------------------------


def test_csv_has_one_row_per_file_and_one_column_per_class(client, seed_job, labels):
    job_id = seed_job([("a.wav", labels[2], 0.7), ("sub/b.wav", None, 0.0)], pending=1)
    response = client.get(f"/api/v1/jobs/{job_id}/results.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    header = list(rows[0])
    assert header[:2] == ["file", "state"]
    assert [h for h in header if h.startswith("p_")] == [f"p_{label}" for label in labels]
    assert [r["file"] for r in rows] == ["a.wav", "sub/b.wav", "pending-0.wav"]
    a, b, pending = rows
    assert a["label"] == labels[2] and float(a[f"p_{labels[2]}"]) == pytest.approx(0.7)
    assert sum(float(a[f"p_{label}"]) for label in labels) == pytest.approx(1.0, abs=5e-4)
    assert b["error_code"] == "not_audio" and b["label"] == "" and b[f"p_{labels[0]}"] == ""
    assert pending["state"] == "pending"


def test_csv_rounds_unless_full_precision_is_asked(client, seed_job, labels):
    conf = 0.5522550105107497
    job_id = seed_job([("a.wav", labels[0], conf)])
    url = f"/api/v1/jobs/{job_id}/results.csv"
    (rounded,) = csv.DictReader(io.StringIO(client.get(url).get_data(as_text=True)))
    assert rounded["confidence"] == "0.5523"
    assert all(len(rounded[f"p_{label}"].split(".")[1]) <= 4 for label in labels)
    (full,) = csv.DictReader(io.StringIO(client.get(url + "?precision=full").get_data(True)))
    assert full["confidence"] == repr(conf)
    assert client.get(url + "?precision=exact").status_code == 422


def test_csv_text_cells_cannot_run_as_formulas(client, seed_job, labels):
    evil = '=HYPERLINK("http://x","y").wav'
    job_id = seed_job([(evil, labels[0], 0.9), ("-2+3.wav", labels[1], 0.8), ("ok.wav", None, 0)])
    body = client.get(f"/api/v1/jobs/{job_id}/results.csv").get_data(as_text=True)
    rows = {r["file"]: r for r in csv.DictReader(io.StringIO(body))}
    assert set(rows) == {"'" + evil, "'-2+3.wav", "ok.wav"}
    assert float(rows["'" + evil]["confidence"]) == pytest.approx(0.9)  # numbers untouched
    # the JSON results keep the real names
    items = client.get(f"/api/v1/jobs/{job_id}/results").get_json()["items"]
    assert {r["file"] for r in items} == {evil, "-2+3.wav", "ok.wav"}


def test_csv_reads_in_batches(client, seed_job, labels, api_settings, monkeypatch):
    from api.store import tabular

    monkeypatch.setattr(tabular, "FILE_BATCH", 4)
    job_id = seed_job([(f"{i:03d}.wav", labels[0], 0.6) for i in range(10)])
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        if "FROM files" in statement and "files.rel_path" in statement:
            statements.append(statement)

    engine = get_engine(api_settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(f"/api/v1/jobs/{job_id}/results.csv")
        lines = response.get_data(as_text=True).splitlines()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(lines) == 11
    assert len(statements) == 4  # 4 + 4 + 2 rows, then an empty batch
    assert all(re.search(r"LIMIT", s) for s in statements)


# --- DELETE /jobs/{id} ---------------------------------------------------------------------------


def test_delete_removes_job_results_and_uploads(client, api_settings):
    job_id = upload(client, (CLIP.read_bytes(), CLIP.name)).get_json()["id"]
    with session_scope(api_settings) as s:
        processing.insert_files(
            s, job_id, [(CLIP.name, "x")], lease_until=utcnow() + timedelta(hours=1)
        )
    folder = api_settings.uploads_dir / job_id
    assert folder.is_dir()
    response = client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.data == b""
    assert not folder.exists()
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    with session_scope(api_settings) as s:
        assert s.scalar(select(func.count()).where(File.job_id == job_id)) == 0
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 404


# --- models, health, OpenAPI ---------------------------------------------------------------------


def test_models_lists_the_registry_without_paths(client, labels):
    body = client.get("/api/v1/models").get_json()
    assert body["items"] and body["default"] == "default"
    assert any(m["labels"] == labels for m in body["items"])
    assert all("path" not in m for m in body["items"])


def test_health_checks_database_and_broker(client, make_app, tmp_path):
    response = client.get("/api/v1/healthz")
    assert response.status_code == 200, response.data
    body = response.get_json()
    ok = {"ok": True, "status": "ok"}
    assert body["status"] == "degraded"  # no worker runs in these tests: jobs would wait
    workers = {"ok": False, "status": "degraded"}
    assert body["checks"] == {"database": ok, "broker": ok, "workers": workers}
    broken = make_app(broker_url=f"redis+socket://{tmp_path / 'nothing.sock'}").test_client()
    response = broken.get("/api/v1/healthz", headers={"Authorization": ""})  # the public
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"]["ok"] and not body["checks"]["broker"]["ok"]
    assert "broker" in body["error"]["message"]
    assert "nothing.sock" not in response.get_data(as_text=True)  # no socket paths in public
    no_db = make_app(database_url=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    (tmp_path / "no").mkdir()
    (tmp_path / "no" / "such").write_text("a file where a folder should be")
    body = no_db.test_client().get("/api/v1/healthz").get_json()
    assert not body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_off_domain_audio_is_uncertain_and_summarised(make_app, seed_job, labels, api_settings):
    """An ood score above the threshold flags a confident result uncertain, and the job says
    how much of it is off-domain; unset, the threshold is the default model's (whisper8: 0.99);
    at 1.0 nothing is flagged for it."""
    job_id = seed_job([("near.wav", labels[0], 0.9)], ood=0.5)
    far = seed_job([(f"far{i}.wav", labels[0], 0.9) for i in range(3)], ood=0.999)
    strict = make_app(ood_above=0.99).test_client()
    near_item = strict.get(f"/api/v1/jobs/{job_id}/results").get_json()["items"][0]
    assert (near_item["ood"], near_item["uncertain"]) == (0.5, False)
    items = strict.get(f"/api/v1/jobs/{far}/results").get_json()["items"]
    assert all(i["uncertain"] and i["ood"] == 0.999 for i in items)
    domain = strict.get(f"/api/v1/jobs/{far}").get_json()["domain"]
    assert domain == {"ood_above": 0.99, "scored": 3, "out_of_domain": 3, "share": 1.0,
                      "warning": True}  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(strict.get(f"/api/v1/jobs/{far}/results.csv").text)))
    assert {(r["ood"], r["uncertain"]) for r in rows} == {("0.999", "true")}
    unset = make_app(ood_above=None).test_client()
    assert unset.get(f"/api/v1/jobs/{far}").get_json()["domain"]["ood_above"] == 0.99
    lenient = make_app(ood_above=1.0).test_client()  # no score lies above 1
    assert not any(
        i["uncertain"] for i in lenient.get(f"/api/v1/jobs/{far}/results").get_json()["items"]
    )
    assert lenient.get(f"/api/v1/jobs/{far}").get_json()["domain"]["warning"] is False
