"""The job pipeline end to end: a real Redis, a real Celery worker, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select, update

from api.store import jobs, processing, workers
from api.store.db import session_scope
from api.store.queue import (
    CHUNK_QUEUE,
    CHUNK_TASK,
    CONTROL_QUEUE,
    SWEEP_TASK,
    create_celery,
)
from api.store.tables import DEFAULT_TENANT, File, Job, utcnow
from api.store.uploads import INCOMING_DIR, upload_dir
from core.predict import FilePrediction, SegmentPrediction, predict_file
from tests.conftest import FIXTURE_CLIPS, chunk_tasks_done
from worker import pipeline
from worker.celery_app import app
from worker.sources import (
    BadArchiveError,
    UnsafeArchiveError,
    extract_zip,
    list_upload,
)
from worker.tasks import enqueue_chunk, enqueue_enumeration

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
RESULT_COLUMNS = (
    "state",
    "attempts",
    "label",
    "confidence",
    "probabilities",
    "duration_s",
    "sample_rate",
    "channels",
    "error",
    "error_code",
    "processed_at",
    "model_version",
)


def make_folder(root: Path, clips: list[Path], *, corrupt: bool = False) -> Path:
    """A new folder under ``root`` with ``clips`` (half in a sub-folder) and maybe a bad file."""
    folder = root / uuid.uuid4().hex[:8]
    (folder / "sub").mkdir(parents=True)
    for i, clip in enumerate(clips):
        shutil.copy(clip, folder / ("sub" if i % 2 else "") / clip.name)
    if corrupt:
        (folder / "corrupt.flac").write_bytes(CLIPS[0].read_bytes()[:400])  # truncated
    (folder / "notes.txt").write_text("not audio, not listed")
    (folder / ".hidden.wav").write_bytes(b"hidden files are not listed")
    return folder


def submit(settings, *, source_kind: str, source: Path, options=None, job_id=None) -> str:
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind=source_kind,
            source=str(source),
            options=options or {"recursive": True},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
            job_id=job_id,
        )
    enqueue_enumeration(job.id)  # after the commit
    return job.id


def file_rows(settings, job_id: str) -> dict[str, dict]:
    with session_scope(settings) as session:
        files = session.scalars(select(File).where(File.job_id == job_id)).all()
        return {f.rel_path: {c: getattr(f, c) for c in ("id", *RESULT_COLUMNS)} for f in files}


@pytest.fixture(scope="module")
def finished_folder_job(settings, celery_worker, allowed_root):
    """A folder job of every fixture clip plus a corrupt file, run to the end by the worker."""
    folder = make_folder(allowed_root, CLIPS, corrupt=True)
    job_id = submit(settings, source_kind="folder", source=folder)
    return job_id, folder


def test_folder_job_results(
    settings, celery_worker, finished_folder_job, wait_for_job, default_model
):
    job_id, folder = finished_folder_job
    job = wait_for_job(job_id, timeout=180)
    assert job.state == "completed_with_errors"
    assert job.enumerated and job.error is None
    assert job.model_version == default_model.version
    assert job.created_at <= job.started_at <= job.finished_at
    assert job.finished_at.tzinfo is not None

    rows = file_rows(settings, job_id)
    expected = {("sub/" if i % 2 else "") + c.name for i, c in enumerate(CLIPS)} | {"corrupt.flac"}
    assert set(rows) == expected
    bad = rows.pop("corrupt.flac")
    assert bad["state"] == "failed" and bad["label"] is None
    assert bad["error_code"] == "corrupt_audio" and "damaged" in bad["error"]
    assert bad["attempts"] == 1
    for rel, row in rows.items():
        direct = predict_file(default_model, folder / rel, max_duration_s=settings.max_duration_s)
        assert row["state"] == "done", (rel, row)
        assert row["label"] == direct.label
        assert row["confidence"] == pytest.approx(direct.confidence)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert set(row["probabilities"]) == set(default_model.labels)
        assert row["duration_s"] == pytest.approx(direct.duration_s)
        assert (row["sample_rate"], row["channels"]) == (direct.sample_rate, direct.channels)
        assert row["error"] is None and row["attempts"] == 1
        assert row["model_version"] == default_model.version
        assert row["processed_at"].tzinfo is not None


def test_job_finished_exactly_once(settings, celery_worker, finished_folder_job, wait_for_job):
    job_id, _ = finished_folder_job
    wait_for_job(job_id, timeout=180)
    # Every chunk (5 of them) and the enumeration tried to finish the job; one UPDATE did.
    assert celery_worker.log().count(f"job {job_id} finished") == 1
    with session_scope(settings) as session:
        assert not processing.try_finish_job(session, job_id)


def test_redelivered_chunks_change_nothing(
    settings, celery_worker, finished_folder_job, wait_for_job
):
    job_id, _ = finished_folder_job
    finished_at = wait_for_job(job_id, timeout=180).finished_at
    before = file_rows(settings, job_id)
    ids = sorted(row["id"] for row in before.values())

    # In this process, as a duplicate delivery would run it ...
    sent: list = []
    assert pipeline.run_chunk(settings, job_id, ids, lambda *a: sent.append(a)) == 0
    # ... and through the broker to the real worker.
    done_before = chunk_tasks_done(settings, celery_worker.node)
    enqueue_chunk(job_id, ids)
    enqueue_chunk(job_id, ids[:3])
    deadline = utcnow() + timedelta(seconds=30)
    while chunk_tasks_done(settings, celery_worker.node) < done_before + 2:
        assert utcnow() < deadline, "the worker did not run the re-sent chunks"
        time.sleep(0.2)

    assert sent == []
    assert file_rows(settings, job_id) == before
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.finished_at) == ("completed_with_errors", finished_at)
        assert jobs.file_counts(session, job_id)["total"] == len(before)


def _stuck_job(settings, folder: Path) -> str:
    """A job whose files are listed but whose chunks were lost (nothing enqueued)."""
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
        )
        entries = [(p.name, str(p)) for p in sorted(folder.glob("*.flac"))]
        processing.insert_files(session, job.id, entries, lease_until=utcnow() + timedelta(hours=1))
        processing.finish_enumeration(session, job.id)
    return job.id


def _set_file(settings, job_id: str, rel_path: str, **values) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(File).where(File.job_id == job_id, File.rel_path == rel_path).values(**values)
        )


def test_sweep_requeues_lost_files_and_gives_up(
    settings, celery_worker, allowed_root, wait_for_job
):
    folder = make_folder(allowed_root, [])
    for clip in CLIPS[:3]:
        shutil.copy(clip, folder / clip.name)
    names = sorted(p.name for p in folder.glob("*.flac"))
    # An API process died mid-upload two days ago, leaving a spooled part behind (made first:
    # the sweep that rescues the job below is then certain to have seen it).
    incoming = settings.uploads_dir / INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    stale, live = incoming / "part-stale", incoming / "part-live"
    stale.write_bytes(b"x"), live.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    job_id = _stuck_job(settings, folder)
    past = utcnow() - timedelta(seconds=5)
    # A worker died on attempt 1 of the first file and on the last attempt of the second; the
    # third file's chunk was lost before it started. The beat-driven sweep must notice all.
    _set_file(settings, job_id, names[0], state="running", attempts=1, lease_expires_at=past)
    _set_file(settings, job_id, names[1], state="running", attempts=3, lease_expires_at=past)
    _set_file(settings, job_id, names[2], lease_expires_at=past)

    job = wait_for_job(job_id, timeout=90)
    assert job.state == "completed_with_errors"
    assert not stale.exists() and live.exists()
    live.unlink()
    rows = file_rows(settings, job_id)
    assert (rows[names[0]]["state"], rows[names[0]]["attempts"]) == ("done", 2)
    assert rows[names[1]]["state"] == "failed"
    assert rows[names[1]]["error"] == (
        "gave up after 3 attempts (the file crashed or timed out the worker)"
    )
    assert rows[names[1]]["error_code"] == processing.GAVE_UP
    assert (rows[names[2]]["state"], rows[names[2]]["attempts"]) == ("done", 1)


def pool_pids(settings, node: str) -> list[int]:
    control = create_celery(settings)
    try:
        stats = control.control.inspect([node], timeout=2, limit=1).stats() or {}
    finally:
        control.close()
    return stats.get(node, {}).get("pool", {}).get("processes", [])


def test_worker_killed_mid_file(settings, celery_worker, allowed_root, wait_for_job):
    """The pool process dies during a chunk whose files it claimed together: the chunk is
    redelivered (late ack, reject on worker lost) but leaves the files under the dead worker's
    lease alone; after the lease the sweep retries them, and every file is done exactly once."""
    folder = make_folder(allowed_root, CLIPS[:3])
    rng = np.random.default_rng(0)
    sf.write(folder / "long.flac", 0.1 * rng.standard_normal(16_000 * 240), 16_000)
    pids = pool_pids(settings, celery_worker.node)  # asked first: the chunk takes ~0.3 s
    job_id = submit(settings, source_kind="folder", source=folder)
    deadline = time.monotonic() + 60
    while file_rows(settings, job_id).get("long.flac", {}).get("state") != "running":
        assert time.monotonic() < deadline, file_rows(settings, job_id)
        time.sleep(0.01)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    redelivered = f"job {job_id}: chunk of 4 files, 0 processed"
    deadline = time.monotonic() + 60
    while redelivered not in celery_worker.log():
        assert time.monotonic() < deadline, celery_worker.log_tail()
        time.sleep(0.1)
    assert "WorkerLostError" in celery_worker.log()
    time.sleep(1)  # neither the redelivered chunk nor the sweep touch leased files
    lost = file_rows(settings, job_id)
    assert len(lost) == 4
    recorded = {rel: r for rel, r in lost.items() if r["state"] == "done"}
    assert "long.flac" not in recorded
    for rel, r in lost.items():
        assert (r["state"], r["attempts"]) in {("done", 1), ("running", 1)}, (rel, r)

    with session_scope(settings) as session:  # the leases run out
        session.execute(
            update(File)
            .where(File.job_id == job_id, File.state == "running")
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    job = wait_for_job(job_id, timeout=90)
    assert job.state == "succeeded"
    rows = file_rows(settings, job_id)
    assert len(rows) == 4
    for rel, r in rows.items():
        if rel in recorded:
            assert r == recorded[rel]  # stored before the crash, never redone
        else:
            assert (r["state"], r["attempts"]) == ("done", 2), (rel, r)
    assert celery_worker.log().count(f"job {job_id} finished") == 1


def test_chunk_claims_and_releases(settings, allowed_root):
    folder = make_folder(allowed_root, [])
    for clip in CLIPS[:4]:
        shutil.copy(clip, folder / clip.name)
    job_id = _stuck_job(settings, folder)
    ids = sorted(r["id"] for r in file_rows(settings, job_id).values())
    _set_file(settings, job_id, Path(CLIPS[3]).name, attempts=1)  # tried once before
    lease = utcnow() + timedelta(minutes=5)
    with session_scope(settings) as session:
        task = "chunk-test"
        workers.register(session, task, hostname="h", pid=1, task="chunk")

    def claim(file_ids, until, **kw):
        with session_scope(settings) as session:
            return processing.claim_files(
                session,
                job_id,
                file_ids,
                worker_id=task,
                lease_until=until,
                max_attempts=3,
                worker_timeout_s=40,
                **kw,
            )

    first = claim(ids, lease, first_attempt_only=True)
    assert [fid for fid, _ in first] == ids[:3]
    assert first[0][1] == str(folder / CLIPS[0].name)
    assert claim(ids, lease + timedelta(seconds=1)) == [(ids[3], str(folder / CLIPS[3].name))]
    assert claim(ids, lease) == []  # every file held by a valid lease
    with session_scope(settings) as session:
        # only files still held under the lease given are released
        assert processing.release_files(session, ids, lease_until=lease, lease_s=60) == ids[:3]
        assert processing.release_files(session, ids, lease_until=lease, lease_s=60) == []
    rows = {r["id"]: r for r in file_rows(settings, job_id).values()}
    assert [(rows[i]["state"], rows[i]["attempts"]) for i in ids] == [("pending", 0)] * 3 + [
        ("running", 2)
    ]
    with session_scope(settings) as session:
        jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT)
    assert claim(ids, lease) == []  # the job is no longer active


def _result(label: str, *, segments: int = 0, error: str | None = None) -> FilePrediction:
    probs = {label: 0.75, "other": 0.25}
    return FilePrediction(
        path="/x",
        label=None if error else label,
        confidence=None if error else 0.75,
        probabilities={} if error else probs,
        duration_s=4.0,
        sample_rate=16_000,
        channels=1,
        error=error,
        error_code="corrupt_audio" if error else None,
        segments=[
            SegmentPrediction(0, 2.0 * i, 2.0 * i + 2, label, 0.75, probs) for i in range(segments)
        ],
    )


def test_batch_of_results_first_result_wins(settings, allowed_root):
    folder = make_folder(allowed_root, [])
    for clip in CLIPS[:4]:
        shutil.copy(clip, folder / clip.name)
    job_id = _stuck_job(settings, folder)
    a, b, c, d = sorted(r["id"] for r in file_rows(settings, job_id).values())
    with session_scope(settings) as session:
        assert processing.record_results(session, [(a, _result("happy", segments=2))], "v1") == [a]
    batch = [
        (a, _result("sad", segments=3)),  # finished already: left as it is
        (b, _result("calm", segments=2)),
        (c, _result("calm", error="damaged")),
        (b, _result("angry")),  # a second result in the same batch loses too
    ]
    with session_scope(settings) as session:
        assert processing.record_results(session, batch, "v2") == [b, c]
        assert processing.record_results(session, batch, "v3") == []
        assert processing.record_results(session, [], "v3") == []
    rows = {r["id"]: r for r in file_rows(settings, job_id).values()}
    got = [(rows[i]["state"], rows[i]["label"], rows[i]["model_version"]) for i in (a, b, c, d)]
    assert got == [
        ("done", "happy", "v1"),
        ("done", "calm", "v2"),
        ("failed", None, "v2"),
        ("pending", None, None),
    ]
    assert rows[c]["error_code"] == "corrupt_audio" and rows[c]["probabilities"] is None
    with session_scope(settings) as session:
        segs = {i: jobs.file_segments(session, i) for i in (a, b, c, d)}
        counts = {i: session.get(File, i).segment_count for i in (a, b, c, d)}
    assert {i: len(v) for i, v in segs.items()} == {a: 2, b: 2, c: 0, d: 0}
    assert counts == {a: 2, b: 2, c: None, d: None}
    assert {seg.label for seg in segs[a]} == {"happy"} and segs[b][1].start_s == 2.0
    assert all(seg.job_id == job_id for seg in segs[a] + segs[b])
    with session_scope(settings) as session:
        jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT)


def test_soft_time_limit_gives_back_unstarted_files(
    settings, allowed_root, default_model, monkeypatch
):
    folder = make_folder(allowed_root, [])
    for clip in CLIPS[:4]:
        shutil.copy(clip, folder / clip.name)
    job_id = _stuck_job(settings, folder)
    ids = sorted(r["id"] for r in file_rows(settings, job_id).values())
    real_analyze = pipeline.analyze
    calls: list[str] = []

    def analyze(settings, model, path, options):
        calls.append(path)
        if len(calls) == 3:
            raise SoftTimeLimitExceeded()
        return real_analyze(settings, model, path, options)

    monkeypatch.setattr(pipeline, "analyze", analyze)
    sent: list = []
    assert pipeline.run_chunk(settings, job_id, ids, lambda *a: sent.append(a)) == 2
    assert sent == [(job_id, [ids[3]])]
    rows = {r["id"]: r for r in file_rows(settings, job_id).values()}
    states = [(rows[i]["state"], rows[i]["attempts"]) for i in ids]
    # stored; stored; interrupted (left to the sweep); never started (given back)
    assert states == [("done", 1), ("done", 1), ("running", 1), ("pending", 0)]
    with session_scope(settings) as session:  # the sweep leaves it to the re-sent chunk
        assert session.get(File, ids[3]).lease_expires_at > utcnow() + timedelta(seconds=60)

    monkeypatch.setattr(pipeline, "analyze", real_analyze)
    assert pipeline.run_chunk(settings, job_id, *sent[0][1:], lambda *a: sent.append(a)) == 1
    rows = {r["id"]: r for r in file_rows(settings, job_id).values()}
    assert (rows[ids[3]]["state"], rows[ids[3]]["attempts"]) == ("done", 1)
    with session_scope(settings) as session:
        # The interrupted file is not this test's business.
        jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT)


def test_sweep_restarts_lost_enumeration(settings, celery_worker, allowed_root, wait_for_job):
    folder = make_folder(allowed_root, CLIPS[:2])
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
        )
        # Enumeration started once, then its worker vanished: no rows, lease expired.
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(attempts=1, lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    job = wait_for_job(job.id, timeout=90)
    assert job.state == "succeeded" and job.attempts == 2
    assert {r["state"] for r in file_rows(settings, job.id).values()} == {"done"}


def test_upload_job_with_zip(settings, celery_worker, wait_for_job):
    job_id = jobs.new_job_id()
    folder = upload_dir(settings, job_id)
    folder.mkdir(parents=True)
    shutil.copy(CLIPS[0], folder / "single.flac")
    with zipfile.ZipFile(folder / "calls.zip", "w") as zf:
        zf.write(CLIPS[1], "day1/a.flac")
        zf.write(CLIPS[2], "day2/deep/b.flac")
        zf.writestr("day1/readme.txt", "not listed")
        zf.writestr("__MACOSX/day1/._a.flac", "junk")
    submit(settings, source_kind="upload", source=folder, job_id=job_id)
    job = wait_for_job(job_id, timeout=90)
    assert job.state == "succeeded", job.error
    rows = file_rows(settings, job_id)
    assert set(rows) == {"single.flac", "calls.zip/day1/a.flac", "calls.zip/day2/deep/b.flac"}

    with session_scope(settings) as session:
        jobs.delete_job(session, settings, job_id, tenant_id=DEFAULT_TENANT)
    assert not folder.exists()
    assert file_rows(settings, job_id) == {}


def test_upload_with_path_traversal_fails_that_archive(
    settings, celery_worker, wait_for_job, tmp_path
):
    job_id = jobs.new_job_id()
    folder = upload_dir(settings, job_id)
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "evil.zip", "w") as zf:
        zf.write(CLIPS[0], "ok.flac")
        zf.write(CLIPS[1], "../../escaped.flac")
    shutil.copy(CLIPS[2], folder / CLIPS[2].name)
    submit(settings, source_kind="upload", source=folder, job_id=job_id)
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "completed_with_errors" and job.error is None
    assert not list(settings.data_dir.rglob("escaped.flac"))
    rows = file_rows(settings, job_id)
    assert sorted(rows) == sorted(["evil.zip", CLIPS[2].name])  # nothing of the archive listed
    evil = rows["evil.zip"]
    assert evil["state"] == "failed" and evil["error_code"] == "unsafe_archive"
    assert "refused" in evil["error"] and "../../escaped.flac" in evil["error"]
    assert rows[CLIPS[2].name]["state"] == "done"


def test_folder_outside_allowed_roots_fails(settings, celery_worker, wait_for_job, tmp_path):
    outside = make_folder(tmp_path, CLIPS[:1])
    job_id = submit(settings, source_kind="folder", source=outside)
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "failed" and "allowed root" in job.error


def test_folder_over_the_tenants_files_quota_fails(
    settings, celery_worker, allowed_root, wait_for_job
):
    from api.store.quotas import set_limits

    folder = make_folder(allowed_root, CLIPS[:3])
    with session_scope(settings) as session:
        set_limits(session, "small", max_files_per_job=2)
        job = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={"recursive": True},
            model_name="default",
            tenant_id="small",
        )
    enqueue_enumeration(job.id)
    done = wait_for_job(job.id, timeout=60)
    assert done.state == "failed" and "more than 2 audio files" in done.error


def test_cancelled_job_is_skipped(settings, celery_worker, allowed_root, wait_for_job):
    folder = make_folder(allowed_root, CLIPS[:4])
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
        )
        jobs.cancel_job(session, job.id, tenant_id=DEFAULT_TENANT)
    enqueue_enumeration(job.id)
    sent: list = []
    pipeline.run_enumeration(settings, job.id, lambda *a: sent.append(a))
    assert sent == []
    assert wait_for_job(job.id).state == "cancelled"
    assert file_rows(settings, job.id) == {}


# --- zip safety (no worker needed) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    ["../evil.flac", "a/../../evil.flac", "/abs/evil.flac", "C:/evil.flac", "..\\evil.flac"],
)
def test_zip_entry_outside_folder_refused(tmp_path, entry):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.flac", b"data")
        zf.writestr(entry, b"data")
    dest = tmp_path / "out" / "inner"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match="refused"):
        extract_zip(archive, dest, max_files=10, max_bytes=10_000)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [archive]


def test_zip_symlink_entry_refused(tmp_path):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link.flac")
        info.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError):
        extract_zip(archive, tmp_path, max_files=10, max_bytes=10_000)


def test_zip_bomb_and_file_count_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.wav", bytes(50 * 1024 * 1024))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="size limit"):
        extract_zip(bomb, tmp_path, max_files=10, max_bytes=10 * 1024 * 1024)
    assert not (tmp_path / "zeros.wav").exists()

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(5):
            zf.writestr(f"{i}.wav", b"x")
    with pytest.raises(UnsafeArchiveError, match="more than 4 files"):
        extract_zip(many, tmp_path, max_files=4, max_bytes=10_000)


def test_list_upload_is_restartable(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("x/1.wav", b"1")
        zf.writestr("2.flac", b"2")
    (tmp_path / "direct.mp3").write_bytes(b"3")
    first = list_upload(tmp_path, max_files=10, max_bytes=1000)
    assert [rel for rel, _ in first.files] == ["a.zip/2.flac", "a.zip/x/1.wav", "direct.mp3"]
    assert first.failed == []
    assert list_upload(tmp_path, max_files=10, max_bytes=1000) == first


def test_bad_or_unsafe_archive_fails_alone(tmp_path):
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zf:
        zf.writestr("1.wav", b"1")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x07" * 64)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../evil.wav", b"x")
    (tmp_path / "direct.wav").write_bytes(b"2")
    for _ in range(2):  # and again, as after a crash: the same answer
        listing = list_upload(tmp_path, max_files=10, max_bytes=1000)
        assert [rel for rel, _ in listing.files] == ["direct.wav", "good.zip/1.wav"]
        failed = {rel: exc for rel, _, exc in listing.failed}
        assert sorted(failed) == ["broken.zip", "evil.zip"]
        assert isinstance(failed["broken.zip"], BadArchiveError)
        assert "broken.zip" in str(failed["broken.zip"])
        assert isinstance(failed["evil.zip"], UnsafeArchiveError)
    assert not (tmp_path / "evil.wav").exists()


# --- broker configuration ------------------------------------------------------------------------


def test_visibility_timeout_outlasts_every_task(settings):
    """Redis redelivers unacknowledged messages after visibility_timeout: it must be longer than
    the longest a task may run, wherever Celery or kombu read it."""
    for celery in (app, create_celery(settings)):
        conf = celery.conf
        limit = conf.task_time_limit
        assert limit and conf.task_soft_time_limit < limit
        assert conf.task_acks_late and conf.task_reject_on_worker_lost
        places = [conf.broker_transport_options["visibility_timeout"]]
        if conf.result_backend or conf.result_backend_transport_options:
            places.append(conf.result_backend_transport_options["visibility_timeout"])
        with celery.connection_for_write() as conn:
            places.append(conn.transport_options["visibility_timeout"])
        assert all(v > limit for v in places), (places, limit)
        for name, task in celery.tasks.items():
            if name.startswith("aer."):
                assert (task.time_limit or limit) < min(places), name
    # and against the real Redis transport, as a worker channel sees it
    celery = create_celery(settings)
    with celery.connection_for_read() as conn:
        assert conn.default_channel.visibility_timeout == settings.visibility_timeout_s
        assert conn.default_channel.visibility_timeout > settings.task_time_limit_s
    celery.close()


def test_each_task_goes_to_one_queue(settings):
    """Every queue has its own exchange and key, so a message is never copied to two queues."""
    queues = create_celery(settings).amqp.queues
    bindings = {(q.exchange.name, q.routing_key) for q in queues.values()}
    assert len(bindings) == len(queues) == 2
    for task, queue in ((CHUNK_TASK, CHUNK_QUEUE), (SWEEP_TASK, CONTROL_QUEUE)):
        route = app.amqp.router.route({}, task)
        assert route["queue"].name == queue
        assert (route["queue"].exchange.name, route["queue"].routing_key) == (queue, queue)
