"""End to end through the API: real Redis, a real Celery worker, SQLite and PostgreSQL.

Uploads (clips, a zip, a corrupt file) and a server-side folder are submitted over HTTP, polled
to completion over HTTP, and every file's result, the counts, the CSV and deletion are checked.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
import zipfile

import pytest

from api.store.states import TERMINAL_JOB_STATES
from core.samples import demo_folder
from tests.auth import authenticated, create_key
from tests.openapi_check import check_responses

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))
AUDIO_ERROR_CODES = {"corrupt_audio", "not_audio", "unsupported_codec", "zero_duration"}
TERMINAL = frozenset(TERMINAL_JOB_STATES)

pytestmark = pytest.mark.skipif(len(CLIPS) < 8, reason="fixture clips missing")


@pytest.fixture(scope="module")
def client(settings, celery_worker):
    """A test client of the app over the backend's settings, with the worker running."""
    from api.store.db import get_engine
    from api.web.app import create_app

    app = authenticated(check_responses(create_app(settings)), create_key(settings))
    app.config["TESTING"] = True
    yield app.test_client()
    get_engine(settings.database_url).dispose()  # close pooled connections before the drop


@pytest.fixture(scope="module")
def labels(default_model) -> list[str]:
    return list(default_model.labels)


def poll(client, job_id: str, timeout: float = 120.0) -> dict:
    """GET the job until it reaches a terminal state."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.data
        job = response.get_json()
        if job["state"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['state']} after {timeout} s: {job['counts']}")
        time.sleep(0.2)


def all_results(client, job_id: str) -> list[dict]:
    items, url = [], f"/api/v1/jobs/{job_id}/results?limit=3"
    while url:
        page = client.get(url).get_json()
        items += page["items"]
        url = page["links"]["next"]
    return items


def true_label(name: str) -> str:
    from core.datasets import parse_ravdess_name

    return parse_ravdess_name(name).emotion


def check_done(result: dict, labels: list[str], version: str) -> None:
    assert result["state"] == "done", result
    assert result["label"] in labels
    assert set(result["probabilities"]) == set(labels)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["confidence"] == pytest.approx(max(result["probabilities"].values()))
    assert result["probabilities"][result["label"]] == pytest.approx(result["confidence"])
    assert result["duration_s"] > 0.5 and result["sample_rate"] == 16000
    assert result["channels"] == 1
    assert result["error"] is None and result["error_code"] is None
    assert result["processed_at"] and result["model_version"] == version


def test_upload_job_with_zip_and_corrupt_file(client, settings, labels):
    direct, zipped = CLIPS[:3], CLIPS[3:6]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for clip in zipped:
            zf.write(clip, f"batch/{clip.name}")
        zf.writestr("batch/readme.txt", "not audio, not listed")
    corrupt = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x07" * 40
    broken_zip = b"PK\x03\x04" + b"\x07" * 64  # looks like a zip to the API, is not one
    files = [(io.BytesIO(c.read_bytes()), c.name) for c in direct]
    files += [(io.BytesIO(archive.getvalue()), "more.zip"), (io.BytesIO(corrupt), "corrupt.wav")]
    files += [(io.BytesIO(broken_zip), "broken.zip")]
    response = client.post(
        "/api/v1/jobs", data={"files": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.data
    job_id = response.get_json()["id"]

    job = poll(client, job_id)
    assert job["state"] == "completed_with_errors", job
    assert job["counts"] == {"total": 8, "pending": 0, "running": 0, "done": 6, "failed": 2}
    assert job["percent"] == 100.0
    assert job["started_at"] and job["finished_at"]
    version = job["model"]["version"]
    assert job["model"]["name"] and version

    results = {r["file"]: r for r in all_results(client, job_id)}
    expected = {c.name for c in direct} | {f"more.zip/batch/{c.name}" for c in zipped}
    assert set(results) == expected | {"corrupt.wav", "broken.zip"}
    for name in expected:
        check_done(results[name], labels, version)
    bad = results["corrupt.wav"]
    assert bad["state"] == "failed" and bad["label"] is None
    assert bad["error"] and bad["error_code"] in AUDIO_ERROR_CODES
    bad_zip = results["broken.zip"]  # the archive fails alone; the other files are analysed
    assert bad_zip["state"] == "failed" and bad_zip["error_code"] == "bad_archive"
    assert "broken.zip" in bad_zip["error"]

    failed = client.get(f"/api/v1/jobs/{job_id}/results?state=failed").get_json()["items"]
    assert sorted(r["file"] for r in failed) == ["broken.zip", "corrupt.wav"]

    response = client.get(f"/api/v1/jobs/{job_id}/results.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 8
    assert [c for c in rows[0] if c.startswith("p_")] == [f"p_{label}" for label in labels]
    by_file = {row["file"]: row for row in rows}
    for name in expected:
        row, result = by_file[name], results[name]
        assert row["label"] == result["label"] and row["state"] == "done"
        assert float(row["confidence"]) == round(result["confidence"], 4)  # the CSV rounds
        for label in labels:
            assert float(row[f"p_{label}"]) == round(result["probabilities"][label], 4)
    assert by_file["corrupt.wav"]["error_code"] == bad["error_code"]

    upload_dir = settings.uploads_dir / job_id
    assert upload_dir.is_dir()
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert not upload_dir.exists()
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/results").status_code == 404


def test_folder_job(client, allowed_root, labels):
    folder = allowed_root / f"calls-{time.monotonic_ns()}"
    (folder / "day2").mkdir(parents=True)
    for clip in CLIPS[:2]:
        shutil.copy(clip, folder / clip.name)
    for clip in CLIPS[2:4]:
        shutil.copy(clip, folder / "day2" / clip.name)
    (folder / "notes.txt").write_text("ignored: does not match the pattern")
    response = client.post("/api/v1/jobs", json={"folder": str(folder), "pattern": "*.flac"})
    assert response.status_code == 202, response.data
    job_id = response.get_json()["id"]

    job = poll(client, job_id)
    assert job["state"] == "succeeded", job
    assert job["counts"]["total"] == job["counts"]["done"] == 4
    results = all_results(client, job_id)
    expected = {c.name for c in CLIPS[:2]} | {f"day2/{c.name}" for c in CLIPS[2:4]}
    assert {r["file"] for r in results} == expected
    for result in results:
        check_done(result, labels, job["model"]["version"])
    # The shipped model was trained on these clips: it should know them.
    hits = sum(r["label"] == true_label(r["file"]) for r in results)
    assert hits >= 3, results

    top = client.get(f"/api/v1/jobs/{job_id}/results?min_confidence=0.999").get_json()["items"]
    assert all(r["confidence"] >= 0.999 for r in top)
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert folder.is_dir() and len(list(folder.rglob("*.flac"))) == 4  # a folder job's audio stays


def test_not_recursive_folder_job(client, allowed_root):
    folder = allowed_root / f"flat-{time.monotonic_ns()}"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(CLIPS[0], folder / CLIPS[0].name)
    shutil.copy(CLIPS[1], folder / "sub" / CLIPS[1].name)
    response = client.post("/api/v1/jobs", json={"folder": str(folder), "recursive": False})
    job = poll(client, response.get_json()["id"])
    assert job["state"] == "succeeded" and job["counts"]["total"] == 1
