"""The service with ``AER_STORAGE_URL`` on a bucket of a real S3-compatible server: the API and a
real Celery worker each have their own data dir (no shared disk) and exchange uploads,
extracted archives and custom models only through the bucket."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from api.store.states import TERMINAL_JOB_STATES, TrainingState
from core.datasets import parse_ravdess_name
from tests.auth import authenticated, create_key, login
from tests.conftest import FIXTURE_CLIPS
from tests.openapi_check import check_responses

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
AUDIO = {".flac", ".wav", ".zip", ".mp3", ".ogg"}
NEGATIVE = {"angry", "fearful", "sad", "disgust"}
FAST = "emo-mlp5"


@pytest.fixture(scope="module")
def storage_bucket(s3_server, database_url) -> str:
    """A bucket per database kind (``database_url``): the variants must not share models."""
    import uuid

    from api.store.objects import s3_client

    name = f"aer-store-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def settings_env(settings_env, storage_bucket) -> dict[str, str]:
    """The worker's variables: the bucket as storage, its own data dir."""
    return {**settings_env, "AER_STORAGE_URL": f"s3://{storage_bucket}/aer"}


@pytest.fixture(scope="module")
def api_settings(settings_env, tmp_path_factory):
    """The API's settings: the same database, broker and bucket, another data dir."""
    from api.store.settings import load_settings

    api_dir = tmp_path_factory.mktemp("api-host").resolve()
    return load_settings({**settings_env, "AER_DATA_DIR": str(api_dir)})


@pytest.fixture(scope="module")
def storage(settings):
    from api.store.storage import open_storage

    return open_storage(settings)


@pytest.fixture(scope="module")
def api_key(api_settings, celery_worker) -> str:
    from api.store.db import upgrade

    upgrade(api_settings.database_url)  # the worker migrated it already
    return create_key(api_settings)


@pytest.fixture(scope="module")
def app(api_settings, api_key):
    from api.web.app import create_app

    app = authenticated(check_responses(create_app(api_settings)), api_key)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def wait(client, url: str, done, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url).get_json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not done after {timeout} s: {body}")
        time.sleep(0.3)


def submit(client, files: list[tuple[bytes, str]], **form) -> dict:
    data = {"files": [(io.BytesIO(b), name) for b, name in files], **form}
    response = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.data
    url = f"/api/v1/jobs/{response.get_json()['id']}"
    return wait(client, url, lambda j: j["state"] in TERMINAL_JOB_STATES)


def audio_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO]


def calls_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(CLIPS[0], "day1/a.flac")
        zf.write(CLIPS[1], "day2/b.flac")
        zf.writestr("readme.txt", "not listed")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def upload_job(app, settings, api_settings) -> dict:
    """Every fixture clip uploaded directly plus a zip of two, run to the end by the worker."""
    assert settings.data_dir != api_settings.data_dir
    files = [(p.read_bytes(), f"calls/{p.name}") for p in CLIPS] + [(calls_zip(), "calls.zip")]
    client = app.test_client()
    job = submit(client, files, segmentation="none")
    items = client.get(f"/api/v1/jobs/{job['id']}/results").get_json()["items"]
    return {"job": job, "items": items}


def test_an_upload_with_a_zip_runs_through_the_bucket(
    upload_job, storage, settings, api_settings, storage_bucket
):
    job, items = upload_job["job"], upload_job["items"]
    assert job["state"] == "succeeded", job
    expected = {f"calls/{p.name}" for p in CLIPS} | {
        "calls.zip/day1/a.flac",
        "calls.zip/day2/b.flac",
    }
    assert {i["file"] for i in items} == expected
    assert all(i["state"] == "done" and i["label"] for i in items), items
    by_name = {i["file"]: i for i in items}
    # The same clip gives the same prediction whether uploaded directly or in the zip.
    assert by_name["calls.zip/day1/a.flac"]["label"] == by_name[f"calls/{CLIPS[0].name}"]["label"]
    keys = {i.key for i in storage.list(f"uploads/{job['id']}")}
    stored = {f"uploads/{job['id']}/{name}" for name in expected | {"calls.zip"}}
    assert keys == stored | {f"uploads/{job['id']}/.extracted/calls.zip.json"}
    assert all(i["links"] for i in items)
    for data_dir in (settings.data_dir, api_settings.data_dir):
        assert audio_files(data_dir) == [], data_dir  # neither host keeps uploaded audio


def test_the_dashboard_streams_audio_ranges_from_the_bucket(app, api_key, upload_job):
    client = login(app.test_client(), api_key)
    job_id = upload_job["job"]["id"]
    item = next(i for i in upload_job["items"] if i["file"] == f"calls/{CLIPS[3].name}")
    clip = CLIPS[3].read_bytes()
    url = f"/jobs/{job_id}/files/{item['id']}/audio"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.data == clip and whole.mimetype == "audio/flac"
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["ETag"]
    part = client.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.data == clip[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(clip)}"
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == clip[-10:]
    past = client.get(url, headers={"Range": f"bytes={len(clip) + 5}-"})
    assert past.status_code == 416
    same = client.get(url, headers={"If-None-Match": whole.headers["ETag"]})
    assert same.status_code == 304
    member = next(i for i in upload_job["items"] if i["file"] == "calls.zip/day1/a.flac")
    extracted = client.get(f"/jobs/{job_id}/files/{member['id']}/audio")  # kept by default
    assert extracted.status_code == 200 and extracted.data == CLIPS[0].read_bytes()


def label_of(name: str) -> str:
    return "upset" if parse_ravdess_name(name).emotion in NEGATIVE else "fine"


def test_a_custom_model_trained_from_the_bucket_runs_a_job(
    client, upload_job, storage, api_settings, settings
):
    job_id = upload_job["job"]["id"]
    for item in upload_job["items"]:
        if item["file"].startswith("calls/"):
            url = f"/api/v1/jobs/{job_id}/files/{item['id']}/label"
            label = label_of(Path(item["file"]).name)
            assert client.put(url, json={"label": label}).status_code == 200
    body = {"name": "calls-s3", "jobs": [job_id], "recipe": FAST}
    response = client.post("/api/v1/models", json=body)
    assert response.status_code == 202, response.data
    training = wait(
        client,
        response.get_json()["links"]["self"],
        lambda t: t["state"] in (TrainingState.SUCCEEDED, TrainingState.FAILED),
    )
    assert training["state"] == TrainingState.SUCCEEDED, training
    stored = {i.key for i in storage.list("models/default")}
    assert {"models/default/calls-s3.skops", "models/default/calls-s3.json"} <= stored
    assert "models/default/calls-s3.md" in stored
    assert not (settings.custom_models_dir / "default").exists()  # nothing on the worker's disk
    listed = client.get("/api/v1/models").get_json()["items"]
    assert any(m["name"] == "calls-s3" and m["available"] for m in listed), listed
    card = client.get("/api/v1/models/calls-s3").get_json()["card"]
    assert card and "calls-s3" in card
    cache = api_settings.data_dir / "cache" / "models" / "default"
    assert (cache / "calls-s3.skops").is_file()  # the API's private copy
    again = client.post("/api/v1/models", json=body)
    assert again.status_code == 409
    files = [(p.read_bytes(), p.name) for p in CLIPS[:3]]
    job = submit(client, files, model="calls-s3", segmentation="none")
    assert job["state"] == "succeeded", job
    assert job["model"]["name"] == "calls-s3"
    items = client.get(f"/api/v1/jobs/{job['id']}/results").get_json()["items"]
    assert {i["label"] for i in items} <= {"upset", "fine"}, items


def test_extractions_are_purged_and_deleting_a_job_deletes_its_objects(
    client, storage, settings, upload_job
):
    from worker.retention import run_purge

    job_id = upload_job["job"]["id"]
    counts = run_purge(settings.model_copy(update={"keep_extracted": False}))
    assert counts["extracted"] >= 1
    keys = {i.key for i in storage.list(f"uploads/{job_id}")}
    assert f"uploads/{job_id}/calls.zip" in keys
    assert not any(
        k.startswith((f"uploads/{job_id}/calls.zip/", f"uploads/{job_id}/.")) for k in keys
    )
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert list(storage.list(f"uploads/{job_id}")) == []
