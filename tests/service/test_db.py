"""Database layer and job state transitions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from api.store import jobs, processing, workers
from api.store.db import (
    current_revision,
    downgrade,
    get_engine,
    head_revision,
    make_engine,
    session_scope,
    upgrade,
)
from api.store.tables import DEFAULT_TENANT, Base, File, Job, Worker, utcnow
from api.store.uploads import upload_dir
from core.predict import FilePrediction


def test_migrations_upgrade_from_empty(empty_database_url):
    url = empty_database_url
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()
    engine = make_engine(url)
    try:
        insp = inspect(engine)
        assert {"jobs", "files", "alembic_version"} <= set(insp.get_table_names())
        assert {ix["name"] for ix in insp.get_indexes("files")} >= {
            "ix_files_job_id_state",
            "ix_files_state_lease_expires_at",
        }
        assert [fk["options"].get("ondelete") for fk in insp.get_foreign_keys("files")] == [
            "CASCADE"
        ]
        # The models and the migrations describe the same schema.
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade(url)  # and back up
    assert current_revision(url) == head_revision()


def test_migration_0009_widens_the_source_kinds_and_keeps_the_files(empty_database_url):
    url = empty_database_url
    upgrade(url, "0007")
    job = "insert into jobs (id, state, source_kind, source, options, model_name, enumerated,"
    job += " created_at, attempts) values (:id, 'queued', :kind, 's', '{}', 'm', false,"
    job += " current_timestamp, 0)"
    row = "insert into files (job_id, rel_path, path, state, attempts)"
    row += " values (:id, 'a.wav', '/a.wav', 'pending', 0)"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(job), {"id": "old", "kind": "folder"})
            conn.execute(text(row), {"id": "old"})
        upgrade(url)
        with engine.begin() as conn:
            for kind in ("s3", "urls"):
                conn.execute(text(job), {"id": kind, "kind": kind})
                conn.execute(text(row), {"id": kind})
            assert conn.scalar(text("select count(*) from files")) == 3  # no copy lost them
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(job), {"id": "ftp", "kind": "ftp"})
        engine.dispose()
        downgrade(url, "0007")  # jobs of the new kinds go, with their files
        with engine.begin() as conn:
            assert conn.execute(text("select id from jobs")).scalars().all() == ["old"]
            assert conn.execute(text("select job_id from files")).scalars().all() == ["old"]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(job), {"id": "s3", "kind": "s3"})
    finally:
        engine.dispose()


def test_sqlite_connections_are_configured(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"  # the folder is created
    engine = make_engine(url)
    with engine.connect() as conn:
        pragma = {
            p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}


def _job(session, **kw) -> Job:
    values = {"source_kind": "folder", "source": "/data/x", "options": {}, "model_name": "default"}
    values["tenant_id"] = DEFAULT_TENANT
    return jobs.create_job(session, **(values | kw))


def _files(session, job_id: str, n: int) -> list[int]:
    entries = [(f"f{i}.wav", f"/data/x/f{i}.wav") for i in range(n)]
    return processing.insert_files(
        session, job_id, entries, lease_until=utcnow() + timedelta(hours=1)
    )


def _task(session, seen_ago_s: float = 0.0) -> str:
    """A ``workers`` row last seen ``seen_ago_s`` ago; returns its id."""
    worker_id = uuid.uuid4().hex
    workers.register(session, worker_id, hostname="h", pid=1, task="test")
    seen = utcnow() - timedelta(seconds=seen_ago_s)
    session.execute(update(Worker).where(Worker.id == worker_id).values(last_seen=seen))
    return worker_id


CLAIM = {"lease_s": 60, "worker_timeout_s": 40}


def _prediction(label: str | None = "happy", error: str | None = None) -> FilePrediction:
    return FilePrediction(
        path="/x",
        label=label,
        confidence=0.75 if label else None,
        probabilities={"happy": 0.75, "sad": 0.25} if label else {},
        duration_s=3.5,
        sample_rate=16_000,
        channels=1,
        error=error,
        error_code="corrupt_audio" if error else None,
    )


def test_session_scope_commits_or_rolls_back(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
    with pytest.raises(RuntimeError):
        with session_scope(settings) as session:
            session.get(Job, job_id).model_name = "changed"
            raise RuntimeError("boom")
    with session_scope(settings) as session:
        assert session.get(Job, job_id).model_name == "default"


def test_timestamps_are_timezone_aware_utc(settings):
    with session_scope(settings) as session:
        job = _job(session)
        job.started_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone()
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job.id)
        assert job.created_at.tzinfo is UTC
        assert job.started_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(Exception, match="naive datetime"):
        with session_scope(settings) as session:
            session.get(Job, job.id).finished_at = datetime(2026, 1, 1)


def test_rel_path_unique_and_insert_idempotent(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        ids = _files(session, job_id, 3)
        assert len(ids) == 3 and ids == sorted(ids)
        new = _files(session, job_id, 4)  # f0-f2 exist already: only f3 is inserted
        assert len(new) == 1 and new[0] not in ids
    with session_scope(settings) as session:
        assert processing.count_files(session, job_id) == 4
    with pytest.raises(IntegrityError):
        with session_scope(settings) as session:
            session.add(File(job_id=job_id, rel_path="f0.wav", path="/elsewhere"))


def test_deleting_a_job_cascades_and_removes_its_uploads(settings, tmp_path):
    with session_scope(settings) as session:
        upload = _job(session, source_kind="upload", source="unused")
        folder_src = tmp_path / "precious"
        folder_src.mkdir()
        folder = _job(session, source=str(folder_src))
        for job in (upload, folder):
            _files(session, job.id, 2)
    up_dir = upload_dir(settings, upload.id)
    up_dir.mkdir(parents=True)
    (up_dir / "a.wav").write_bytes(b"x")
    for job_id in (upload.id, folder.id):
        with session_scope(settings) as session:
            jobs.delete_job(session, settings, job_id, tenant_id=DEFAULT_TENANT)
    with session_scope(settings) as session:
        for job_id in (upload.id, folder.id):
            assert session.get(Job, job_id) is None
            n = session.execute(
                text("SELECT count(*) FROM files WHERE job_id = :j"), {"j": job_id}
            ).scalar()
            assert n == 0  # removed by ON DELETE CASCADE in the database
    assert not up_dir.exists()
    assert folder_src.is_dir()  # a folder job's source is never touched
    with pytest.raises(jobs.JobNotFoundError):
        with session_scope(settings) as session:
            jobs.delete_job(session, settings, upload.id, tenant_id=DEFAULT_TENANT)


def test_claim_file_rules(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        fid, other = _files(session, job_id, 2)

    with session_scope(settings) as session:
        task = _task(session)

    def claim():
        with session_scope(settings) as session:
            return processing.claim_file(
                session, job_id, fid, worker_id=task, max_attempts=2, **CLAIM
            )

    assert claim() == "/data/x/f0.wav"
    assert claim() is None  # held by a live lease
    with session_scope(settings) as session:
        f = session.get(File, fid)
        assert (f.state, f.attempts) == ("running", 1)
        assert f.lease_expires_at > utcnow() + timedelta(seconds=50)
        f.lease_expires_at = utcnow() - timedelta(seconds=1)
    assert claim() == "/data/x/f0.wav"  # lease expired: the worker died, try again
    with session_scope(settings) as session:
        session.get(File, fid).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert claim() is None  # out of attempts: left to the sweep
    with session_scope(settings) as session:
        kw = {"worker_id": task, "max_attempts": 2, **CLAIM}
        assert processing.claim_file(session, "nope", other, **kw) is None
        jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT)
        assert processing.claim_file(session, job_id, other, **kw) is None


def test_first_result_wins(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        (fid,) = _files(session, job_id, 1)
        processing.claim_file(session, job_id, fid, worker_id="w", max_attempts=3, **CLAIM)
    with session_scope(settings) as session:
        assert processing.record_result(session, fid, _prediction("happy"), "v1")
    with session_scope(settings) as session:
        assert not processing.record_result(session, fid, _prediction("sad"), "v2")
        assert not processing.fail_file(session, fid, "late", "internal_error")
        f = session.get(File, fid)
        assert (f.state, f.label, f.confidence, f.model_version) == ("done", "happy", 0.75, "v1")
        assert f.probabilities == {"happy": 0.75, "sad": 0.25}
        assert f.lease_expires_at is None and f.processed_at.tzinfo is UTC


@pytest.mark.parametrize("failed", [False, True])
def test_job_finishes_once_and_only_when_complete(settings, failed):
    with session_scope(settings) as session:
        job_id = _job(session).id
        ids = _files(session, job_id, 3)
    for fid in ids:
        with session_scope(settings) as session:
            assert not processing.try_finish_job(session, job_id)  # files left, not enumerated
            bad = failed and fid == ids[-1]
            processing.record_result(
                session, fid, _prediction(None if bad else "sad", "x" if bad else None), "v"
            )
    with session_scope(settings) as session:
        assert not processing.try_finish_job(session, job_id)  # not enumerated yet
        assert processing.finish_enumeration(session, job_id)
    # Many workers finishing their last chunk at the same moment: exactly one wins.
    results: list[bool] = []

    def finish():
        with session_scope(settings) as session:
            results.append(processing.try_finish_job(session, job_id))

    threads = [threading.Thread(target=finish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        assert job.state == ("completed_with_errors" if failed else "succeeded")
        assert job.finished_at is not None
        assert jobs.file_counts(session, job_id) == {
            "pending": 0,
            "running": 0,
            "done": 2 if failed else 3,
            "failed": 1 if failed else 0,
            "total": 3,
        }


def test_cancel_only_active_jobs(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        assert processing.mark_job_running(session, job_id, "v1")
        assert not processing.mark_job_running(session, job_id, "v2")
        job = jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT)
        assert job.state == "cancelled" and job.finished_at is not None
        assert not processing.fail_job(session, job_id, "too late")
        assert jobs.cancel_job(session, job_id, tenant_id=DEFAULT_TENANT).state == "cancelled"
        assert session.get(Job, job_id).model_version == "v1"


def test_sweep_statements(settings):
    past = utcnow() - timedelta(seconds=1)
    with session_scope(settings) as session:
        job_id = _job(session).id
        running, dying, pending, fresh = _files(session, job_id, 4)
        stuck = _job(session)
        stuck.attempts, stuck.lease_expires_at = 1, past
        spent = _job(session)
        spent.attempts, spent.lease_expires_at = 3, past
        cancelled = _job(session)
        cancelled_file = _files(session, cancelled.id, 1)[0]
        jobs.cancel_job(session, cancelled.id, tenant_id=DEFAULT_TENANT)
        session.execute(
            update(File)
            .where(File.id.in_([running, dying, cancelled_file]))
            .values(state="running", attempts=1, lease_expires_at=past)
        )
        session.execute(update(File).where(File.id == dying).values(attempts=3))
        session.execute(update(File).where(File.id == pending).values(lease_expires_at=past))
    with session_scope(settings) as session:
        assert job_id in processing.give_up_files(session, max_attempts=3, worker_timeout_s=40)
        assert processing.expired_files(
            session, max_attempts=3, include_pending=False, **CLAIM
        ) == {job_id: [running]}
        session.execute(update(File).where(File.id == running).values(lease_expires_at=past))
        requeued = processing.expired_files(session, max_attempts=3, include_pending=True, **CLAIM)
        assert requeued[job_id] == sorted([running, pending])
        assert cancelled.id not in requeued
        stalled = processing.stalled_enumerations(
            session, max_attempts=3, unclaimed_after_s=60, **CLAIM
        )
        assert stuck.id in stalled and spent.id not in stalled
    with session_scope(settings) as session:
        f = session.get(File, dying)
        assert (f.state, f.error_code) == ("failed", "gave_up")
        assert f.error == "gave up after 3 attempts (the file crashed or timed out the worker)"
        assert session.get(File, fresh).state == "pending"
        assert session.get(File, cancelled_file).state == "running"  # cancelled jobs are left
        assert session.get(Job, spent.id).state == "failed"
        assert "gave up" in session.get(Job, spent.id).error
        again = processing.stalled_enumerations(
            session, max_attempts=3, unclaimed_after_s=60, **CLAIM
        )
        assert stuck.id not in again  # it got a fresh lease


def test_files_of_a_gone_task_are_taken_back_before_their_lease(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        live_file, dead_file, pending, held = _files(session, job_id, 4)
        live, dead = _task(session, seen_ago_s=5), _task(session, seen_ago_s=60)
        # a chunk of the dead task held this file for later: its message died with the task
        processing.extend_pending_leases(
            session, job_id, [held], worker_id=dead, lease_until=utcnow() + timedelta(hours=1)
        )
    for fid, task in ((live_file, live), (dead_file, dead)):
        with session_scope(settings) as session:
            kw = {"worker_id": task, "max_attempts": 3, **CLAIM}
            assert processing.claim_file(session, job_id, fid, **kw)
    with session_scope(settings) as session:
        other = _task(session)
        # a redelivered chunk takes the dead task's file at once, never the live one's
        kw = {"worker_id": other, "lease_until": utcnow() + timedelta(minutes=5), **CLAIM}
        kw.pop("lease_s")
        assert processing.claim_files(session, job_id, [live_file], max_attempts=3, **kw) == []
        session.execute(update(File).where(File.id == dead_file).values(claimed_by=dead))
    with session_scope(settings) as session:
        requeued = processing.expired_files(session, max_attempts=3, include_pending=True, **CLAIM)
        assert requeued[job_id] == [dead_file, held]  # leases valid: the pending file waits
        lost = processing.expired_files(
            session, max_attempts=3, include_pending=False, messages_lost=True, **CLAIM
        )
        assert lost[job_id] == [dead_file, pending, held]  # the broker lost every message
        assert session.get(File, live_file).state == "running"
        assert workers.prune(session, timeout_s=40) >= 1
        assert set(session.scalars(select(Worker.id))) >= {live, other}  # dead ones removed
        assert session.get(Worker, dead) is None


def test_a_file_that_keeps_killing_its_task_is_given_up(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        (fid,) = _files(session, job_id, 1)
        dead = _task(session, seen_ago_s=60)
        session.execute(
            update(File).where(File.id == fid).values(state="running", attempts=3, claimed_by=dead)
        )
    with session_scope(settings) as session:
        assert processing.give_up_files(session, max_attempts=3, worker_timeout_s=40) == {job_id}
        assert session.get(File, fid).error_code == "gave_up"


def test_enumeration_claims(settings):
    with session_scope(settings) as session:
        job_id = _job(session).id
        live, dead = _task(session), _task(session, seen_ago_s=60)

    def claim(task):
        with session_scope(settings) as session:
            job = processing.claim_enumeration(
                session, job_id, worker_id=task, max_attempts=3, **CLAIM
            )
            return job and (job.claimed_by, job.attempts)

    def stalled(**kw):  # whether the sweep sends the job again (other tests' jobs ignored)
        with session_scope(settings) as session:
            return job_id in processing.stalled_enumerations(session, max_attempts=3, **CLAIM, **kw)

    assert not stalled(unclaimed_after_s=60)  # just created: its message is on its way
    assert stalled(unclaimed_after_s=0)  # nobody took it: sent again
    assert not stalled(unclaimed_after_s=0)  # its new message has a lease to be taken
    assert stalled(unclaimed_after_s=60, messages_lost=True)
    assert claim(dead) == (dead, 1)
    assert claim(live) == (live, 2)  # the dead task's claim is void
    assert claim(dead) is None  # a live task holds it
    assert not stalled(unclaimed_after_s=0, messages_lost=True)
    with session_scope(settings) as session:
        assert not processing.release_enumeration(session, job_id, dead)  # not the holder
        assert processing.release_enumeration(session, job_id, live)  # the database failed
        job = session.get(Job, job_id)
        assert (job.claimed_by, job.attempts, job.lease_expires_at) == (None, 1, None)
    assert claim(live) == (live, 2)
    with session_scope(settings) as session:
        session.execute(update(Job).where(Job.id == job_id).values(claimed_by=dead))
    assert stalled(unclaimed_after_s=60)  # its task is gone


def test_check_folder(settings, allowed_root, tmp_path):
    inside = allowed_root / "calls"
    inside.mkdir(exist_ok=True)
    assert jobs.check_folder(settings, inside) == inside.resolve()
    with pytest.raises(jobs.SourceNotAllowedError):
        jobs.check_folder(settings, tmp_path)
    with pytest.raises(jobs.SourceNotAllowedError):
        jobs.check_folder(settings, allowed_root / "..")
    link = allowed_root / "sneaky"
    if not link.exists():
        link.symlink_to(tmp_path)
    with pytest.raises(jobs.SourceNotAllowedError):
        jobs.check_folder(settings, link)
    with pytest.raises(jobs.SourceNotFoundError):
        jobs.check_folder(settings, allowed_root / "missing")


def test_engines_are_shared_per_url(settings):
    assert get_engine(settings.database_url) is get_engine(settings.database_url)
    with session_scope(get_engine(settings.database_url)) as session:
        assert session.scalar(select(1)) == 1
