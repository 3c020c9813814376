"""Retention: audio and results purged by age, by the beat's ``aer.purge`` task, and recorded in
``purges``; DELETE /jobs/{id} removes every file of a job, extracted zips included."""

from __future__ import annotations

import io
import os
import time
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from api.store import jobs, processing
from api.store.db import session_scope
from api.store.tables import File, Job, JobState, Purge, utcnow
from api.store.uploads import ARCHIVES_DIR, upload_dir
from tests.conftest import FIXTURE_CLIPS, record_upload_job
from worker import pipeline
from worker.retention import run_purge

CLIP = sorted(FIXTURE_CLIPS.glob("*.flac"))[0]
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def settings_env(settings_env):
    """The test service with an audio retention of 2 days and a results retention of 5."""
    return {**settings_env, "AER_RETENTION_DAYS": "2", "AER_RESULTS_RETENTION_DAYS": "5"}


def make_job(settings, *, ended_days_ago: float | None, extracted: bool = False) -> str:
    """An upload job with a file row and its folder; ended that many days ago (None: running)."""
    job_id = jobs.new_job_id()
    folder = upload_dir(settings, job_id)
    folder.mkdir(parents=True)
    (folder / "a.flac").write_bytes(CLIP.read_bytes())
    if extracted:
        (folder / ARCHIVES_DIR).mkdir()
        (folder / ARCHIVES_DIR / "b.zip").write_bytes(b"PK\x05\x06" + bytes(18))
        (folder / "b.zip").mkdir()
        (folder / "b.zip" / "b.flac").write_bytes(CLIP.read_bytes())
    record_upload_job(settings, job_id, folder)
    with session_scope(settings) as session:
        processing.insert_files(
            session, job_id, [("a.flac", str(folder / "a.flac"))], lease_until=utcnow()
        )
        if ended_days_ago is not None:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(state=JobState.SUCCEEDED, finished_at=utcnow() - ended_days_ago * DAY)
            )
    return job_id


def job_exists(settings, job_id: str) -> bool:
    with session_scope(settings) as session:
        return session.get(Job, job_id) is not None


def file_count(settings, job_id: str) -> int:
    with session_scope(settings) as session:
        return len(session.scalars(select(File.id).where(File.job_id == job_id)).all())


def purges(settings) -> list[tuple[str, int, int]]:
    with session_scope(settings) as session:
        rows = session.scalars(select(Purge).order_by(Purge.id)).all()
        return [(p.kind, p.jobs, p.files) for p in rows]


def test_audio_and_results_are_purged_by_age(settings):
    settings = settings.model_copy(update={"keep_extracted": False})  # the default keeps them
    running = make_job(settings, ended_days_ago=None)
    recent = make_job(settings, ended_days_ago=1, extracted=True)
    old_audio = make_job(settings, ended_days_ago=3)
    old_results = make_job(settings, ended_days_ago=6)
    orphan = upload_dir(settings, jobs.new_job_id())  # a folder whose job is gone
    orphan.mkdir(parents=True)
    (orphan / "x.wav").write_bytes(b"x")
    three_days_ago = time.time() - 3 * 86400
    os.utime(orphan, (three_days_ago, three_days_ago))
    before = len(purges(settings))

    counts = run_purge(settings)

    assert counts == {"results": 1, "audio": 2, "extracted": 1}
    # the results: the job, its rows and its audio
    assert not job_exists(settings, old_results) and file_count(settings, old_results) == 0
    assert not upload_dir(settings, old_results).exists()
    # the audio only: the job and its results stay
    assert job_exists(settings, old_audio) and file_count(settings, old_audio) == 1
    assert not upload_dir(settings, old_audio).exists()
    assert not orphan.exists()
    # younger than the retention: only the extracted zip goes (the job has ended)
    folder = upload_dir(settings, recent)
    assert (folder / "a.flac").is_file() and (folder / ARCHIVES_DIR / "b.zip").is_file()
    assert not (folder / "b.zip").exists()
    assert (upload_dir(settings, running) / "a.flac").is_file()
    assert job_exists(settings, running) and job_exists(settings, recent)
    assert purges(settings)[before:] == [("results", 1, 1), ("audio", 2, 2), ("extracted", 1, 0)]

    assert run_purge(settings) == {"results": 0, "audio": 0, "extracted": 0}
    assert len(purges(settings)) == before + 3  # nothing deleted, nothing recorded


def test_nothing_is_purged_without_retention_settings(settings):
    kept = settings.model_copy(
        update={"retention_days": None, "results_retention_days": None, "keep_extracted": True}
    )
    job_id = make_job(kept, ended_days_ago=400, extracted=True)
    assert run_purge(kept) == {"results": 0, "audio": 0, "extracted": 0}
    assert job_exists(kept, job_id) and (upload_dir(kept, job_id) / "b.zip" / "b.flac").is_file()
    run_purge(settings)  # and with them, it goes
    assert not job_exists(settings, job_id)


def test_the_beat_runs_the_purge(settings, celery_worker):
    """The worker's embedded beat sends ``aer.purge`` every sweep interval (1 s here)."""
    from worker.celery_app import app

    assert app.conf.beat_schedule["aer-purge"]["task"] == "aer.purge"
    job_id = make_job(settings, ended_days_ago=10)
    deadline = time.monotonic() + 60
    while job_exists(settings, job_id) or upload_dir(settings, job_id).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"aer.purge did not run:\n{celery_worker.log_tail()}")
        time.sleep(0.2)
    assert ("results", 1, 1) in purges(settings)


# --- DELETE /jobs/{id} ---------------------------------------------------------------------------


def test_delete_removes_every_file_of_the_job(client, api_settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(CLIP, "day1/a.flac")
    files = [(io.BytesIO(CLIP.read_bytes()), CLIP.name), (io.BytesIO(buffer.getvalue()), "c.zip")]
    response = client.post(
        "/api/v1/jobs", data={"files": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.data
    job_id = response.get_json()["id"]
    pipeline.run_enumeration(api_settings, job_id, lambda *_: None)  # extracts c.zip
    folder = upload_dir(api_settings, job_id)
    assert (folder / "c.zip" / "day1" / "a.flac").is_file()
    assert (folder / ARCHIVES_DIR / "c.zip").is_file()

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert not folder.exists()
    left = [p for p in api_settings.data_dir.rglob("*") if job_id in str(p)]
    assert left == []
    assert file_count(api_settings, job_id) == 0
