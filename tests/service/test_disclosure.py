"""What the API tells anyone: no server paths in errors, health details only for admins, and
models that fail their checks listed as unavailable and refused for jobs."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from api.store import jobs
from api.store.uploads import upload_dir
from core.registry import DEFAULT_MODELS_DIR
from tests.conftest import FIXTURE_CLIPS, record_upload_job
from tests.service.test_api import error_code
from worker import pipeline

CLIP = sorted(FIXTURE_CLIPS.glob("*.flac"))[0]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """The shipped default model, a tampered copy of it, and a model whose metadata is broken."""
    folder = tmp_path_factory.mktemp("models").resolve()
    name = (DEFAULT_MODELS_DIR / "default.txt").read_text().split()[0]
    for ext in (".skops", ".json"):
        shutil.copy(DEFAULT_MODELS_DIR / f"{name}{ext}", folder / f"{name}{ext}")
    (folder / "default.txt").write_text(name + "\n")
    meta = json.loads((folder / f"{name}.json").read_text())
    (folder / "tampered.json").write_text(json.dumps({**meta, "name": "tampered"}))
    data = bytearray((folder / f"{name}.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed: the recorded sha256 no longer matches
    (folder / "tampered.skops").write_bytes(bytes(data))
    (folder / "broken.json").write_text("{not json")
    (folder / "broken.skops").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def app_settings(api_settings, models_dir):
    return api_settings.model_copy(update={"models_dir": models_dir})


@pytest.fixture
def client(app_settings, api_key):
    from api.web.app import create_app
    from tests.auth import authenticated
    from tests.openapi_check import check_responses

    app = authenticated(check_responses(create_app(app_settings)), api_key)
    app.config["TESTING"] = True
    return app.test_client()


def assert_no_paths(text: str, settings) -> None:
    """No server folder, nor any absolute path under /tmp (where the tests' folders are)."""
    needles = [str(f) for f in (settings.data_dir, settings.models_dir, settings.uploads_dir)]
    for needle in [*needles, "/tmp/", ".sock"]:
        at = text.find(needle)
        assert at < 0, f"{needle!r} in the answer: ...{text[max(0, at - 80) : at + 80]}..."


def test_broken_models_are_listed_unavailable_without_paths(client, app_settings):
    response = client.get("/api/v1/models")
    assert response.status_code == 200
    assert_no_paths(response.get_data(as_text=True), app_settings)
    items = {m["name"]: m for m in response.get_json()["items"]}
    default = (app_settings.models_dir / "default.txt").read_text().split()[0]
    assert items[default]["available"] is True and "reason" not in items[default]
    assert items["tampered"]["available"] is False
    assert "sha256" in items["tampered"]["reason"]
    assert items["broken"]["available"] is False
    assert "broken.json" in items["broken"]["reason"]


def test_a_job_with_a_broken_model_is_refused(client, app_settings):
    for model in ("tampered", "broken"):
        data = {"files": [(io.BytesIO(CLIP.read_bytes()), CLIP.name)], "model": model}
        response = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
        assert response.status_code == 422, response.data
        assert error_code(response) == "model_unavailable"
        assert_no_paths(response.get_data(as_text=True), app_settings)
    response = client.post(
        "/api/v1/jobs",
        data={"files": [(io.BytesIO(b"x"), "a.wav")], "model": "nope"},
        content_type="multipart/form-data",
    )
    assert error_code(response) == "model_not_found"
    assert_no_paths(response.get_data(as_text=True), app_settings)


def test_the_verdict_follows_the_files(app_settings, models_dir):
    """A model repaired (or broken) after it was listed gets a new verdict at once."""
    from core.registry import ModelRegistry

    registry = ModelRegistry(models_dir)
    assert registry.problem("tampered")
    name = registry.default_name()
    shutil.copy(models_dir / f"{name}.skops", models_dir / "repaired.skops")
    shutil.copy(models_dir / "tampered.json", models_dir / "repaired.json")
    assert registry.problem("repaired") is None
    (models_dir / "repaired.skops").write_bytes(b"PK not a model any more")
    assert "sha256" in registry.problem("repaired")


@pytest.mark.parametrize(("model", "why"), [("tampered", "sha256"), ("broken", "broken.json")])
def test_job_and_file_errors_name_no_server_path(client, app_settings, model, why):
    """A model broken after the job was accepted fails the job; a bad zip fails a row: neither
    message, nor any answer about the job, shows the data or models folder."""
    job_id = jobs.new_job_id()
    folder = upload_dir(app_settings, job_id)
    folder.mkdir(parents=True)
    shutil.copy(CLIP, folder / CLIP.name)
    (folder / "bad.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with zipfile.ZipFile(folder / "good.zip", "w") as zf:
        zf.write(CLIP, "in/zip.flac")
    record_upload_job(app_settings, job_id, folder, model)
    chunks = []
    pipeline.run_enumeration(app_settings, job_id, lambda j, ids: chunks.append((j, ids)))
    for chunk in chunks:
        pipeline.run_chunk(app_settings, *chunk, lambda *_: None)
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["state"] == "failed" and why in job["error"]
    answers = [
        client.get(f"/api/v1/jobs/{job_id}"),
        client.get(f"/api/v1/jobs/{job_id}/results"),
        client.get(f"/api/v1/jobs/{job_id}/results.csv"),
        client.get("/api/v1/jobs"),
    ]
    # a failed job keeps its extraction only for the player (the default), like any ended job
    assert (folder / "good.zip").exists() == app_settings.keep_extracted
    assert (folder / ".archives" / "good.zip").is_file()
    results = answers[1].get_json()["items"]
    assert {r["file"]: r["error_code"] for r in results}["bad.zip"] == "bad_archive"
    for response in answers:
        assert response.status_code == 200
        assert_no_paths(response.get_data(as_text=True), app_settings)


def test_without_paths(app_settings):
    from api.store.redact import without_paths

    job = "0" * 32
    message = (
        f"internal error: FileNotFoundError(2, 'No such file', "
        f"'{app_settings.uploads_dir}/{job}/a.zip/b.wav') in {app_settings.models_dir}/x.skops"
        f" near {app_settings.data_dir}/aer.db"
    )
    assert without_paths(message, app_settings) == (
        "internal error: FileNotFoundError(2, 'No such file', 'a.zip/b.wav') in x.skops"
        " near <data dir>/aer.db"
    )


# --- /healthz ------------------------------------------------------------------------------------


def test_health_shows_ok_or_degraded_only(make_app, tmp_path, api_settings):
    from tests.auth import bearer, create_key

    socket = tmp_path / "nothing.sock"
    broken = make_app(broker_url=f"redis+socket://{socket}").test_client()
    response = broken.get("/api/v1/healthz", headers={"Authorization": ""})  # anyone
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["broker"] == {"ok": False, "status": "degraded"}
    assert body["checks"]["database"] == {"ok": True, "status": "ok"}
    assert str(socket) not in response.get_data(as_text=True)
    assert "Error" not in response.get_data(as_text=True)

    reader = bearer(create_key(api_settings, scopes=("read", "submit"), name="reader"))
    body = broken.get("/api/v1/healthz", headers=reader).get_json()
    assert "error" not in body["checks"]["broker"]  # a key, but not an admin's
    body = broken.get("/api/v1/healthz").get_json()  # the client's admin key
    assert str(socket) in body["checks"]["broker"]["error"]
