"""Call recordings as emotion timelines: segments stored per channel by the real worker.

A stereo 8 kHz mu-law "call" is built from the 16 fixture clips (turns alternating between
channels 0 and 1 with pauses, so that each channel hears one clip of each emotion) and run as
folder jobs, split and mixed, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from sqlalchemy import func, select, text, update

from api.store import jobs, processing
from api.store.db import session_scope
from api.store.settings import ConfigError, load_settings
from api.store.tables import DEFAULT_TENANT, File, Segment, utcnow
from core.analyze import CHANNEL_MODES, SEGMENTATIONS, analyze_file
from core.predict import predict_file
from tests.conftest import FIXTURE_CLIPS, chunk_tasks_done
from worker import pipeline
from worker.tasks import enqueue_chunk, enqueue_enumeration

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
CALL_SR = 8_000
#: (channel, fixture clip) in speaking order. The clips are sorted by emotion code, two per
#: emotion, so alternating channels gives each channel all eight emotions.
TURNS = [(i % 2, i) for i in range(16)]
#: How far VAD may widen a segment beyond the clip it belongs to (seconds).
SLACK_S = 0.5

pytestmark = pytest.mark.skipif(len(CLIPS) < len(TURNS), reason="fixture clips missing")


def write_call(path: Path) -> list[tuple[int, float, float]]:
    """Write the stereo call to ``path``; returns each turn's ``(channel, start_s, end_s)``."""
    rng = np.random.default_rng(7)
    blocks, turns, t = [], [], 0
    for channel, clip in TURNS:
        y, sr = sf.read(CLIPS[clip], dtype="float32")
        y = soxr.resample(y, sr, CALL_SR)
        pause = int(rng.uniform(0.6, 1.2) * CALL_SR)
        block = np.zeros((2, pause + y.size), np.float32)
        block[channel, pause:] = y
        turns.append((channel, (t + pause) / CALL_SR, (t + block.shape[1]) / CALL_SR))
        blocks.append(block)
        t += block.shape[1]
    blocks.append(np.zeros((2, CALL_SR), np.float32))
    call = np.concatenate(blocks, axis=1)
    call += 1e-3 * rng.standard_normal(call.shape).astype(np.float32)
    sf.write(path, call.T, CALL_SR, format="WAV", subtype="ULAW")  # telephone audio
    return turns


def submit(settings, folder: Path, options: dict) -> str:
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind="folder",
            source=str(folder),
            options={"recursive": True, **options},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
        )
    enqueue_enumeration(job.id)  # after the commit
    return job.id


def files_of(settings, job_id: str) -> dict[str, File]:
    with session_scope(settings) as session:
        return {f.rel_path: f for f in session.scalars(select(File).where(File.job_id == job_id))}


def segment_rows(settings, file_id: int) -> list[tuple]:
    with session_scope(settings) as session:
        rows = session.scalars(select(Segment).where(Segment.file_id == file_id)).all()
        return sorted(
            (s.id, s.job_id, s.channel, s.start_s, s.end_s, s.label, s.confidence, s.probabilities)
            for s in rows
        )


def count_segments(settings, column: str, value) -> int:
    with session_scope(settings) as session:
        sql = text(f"SELECT count(*) FROM segments WHERE {column} = :v")
        return session.execute(sql, {"v": value}).scalar()


@pytest.fixture(scope="module")
def call(allowed_root) -> tuple[Path, list[tuple[int, float, float]]]:
    """A folder holding only ``call.wav``; yields the folder and the turns."""
    folder = allowed_root / f"call-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder, write_call(folder / "call.wav")


@pytest.fixture(scope="module")
def split_job(settings, celery_worker, call) -> str:
    folder, _ = call
    return submit(settings, folder, {"channels": "split", "segmentation": "vad"})


def test_split_job_stores_segments_per_channel(
    settings, split_job, call, wait_for_job, default_model
):
    folder, turns = call
    job = wait_for_job(split_job, timeout=60)
    assert job.state == "succeeded", job.error
    row = files_of(settings, split_job)["call.wav"]
    assert (row.state, row.channels, row.sample_rate) == ("done", 2, CALL_SR)
    segments = segment_rows(settings, row.id)
    assert row.segment_count == len(segments) >= len(TURNS)
    labels = set(default_model.labels)
    for _, job_id, channel, start, end, label, confidence, probs in segments:
        assert job_id == split_job
        assert 0 <= start < end <= row.duration_s + 1e-3
        assert set(probs) == labels and sum(probs.values()) == pytest.approx(1.0)
        assert label == max(probs, key=probs.get) and confidence == probs[label]
        # on the channel of the turn it belongs to, never on the other speaker's turn
        assert any(
            ch == channel and a - SLACK_S <= start < end <= b + SLACK_S for ch, a, b in turns
        ), (channel, start, end)
    for channel, a, b in turns:  # every turn is heard on its own channel
        assert any(ch == channel and s < b and e > a for _, _, ch, s, e, *_ in segments)

    # What the worker stored is what the core analysis gives.
    direct = analyze_file(
        default_model, folder / "call.wav", channels="split", max_duration_s=settings.max_duration_s
    )
    assert [(s[2], s[3], s[4], s[5]) for s in segments] == [
        (s.channel, s.start_s, s.end_s, s.label) for s in direct.segments
    ]
    assert row.label == direct.label and row.confidence == pytest.approx(direct.confidence)

    summary = row.summary
    assert summary["n_segments"] == len(segments)
    assert summary["speech_s"] + summary["silence_s"] == pytest.approx(row.duration_s, abs=0.01)
    assert summary["dominant"] in labels
    assert sum(summary["shares"].values()) == pytest.approx(1.0)
    assert summary["most_negative"]["channel"] in (0, 1)
    per_channel = summary["channels"]
    assert [c["channel"] for c in per_channel] == [0, 1]
    for c in per_channel:
        assert c["n_segments"] == sum(s[2] == c["channel"] for s in segments) > 0
        assert c["dominant"] in labels


def test_segment_pages(settings, split_job, wait_for_job):
    wait_for_job(split_job, timeout=60)
    row = files_of(settings, split_job)["call.wav"]
    stored = segment_rows(settings, row.id)
    with session_scope(settings) as session:
        pages, after = [], None
        while page := jobs.file_segments(session, row.id, after_id=after, limit=2):
            pages.append(page)
            after = page[-1].id
        by_file = [s for page in pages for s in page]
        assert len(pages) == (len(stored) + 1) // 2
        # id order is timeline order: channel 0 first, then by start time
        assert [(s.channel, s.start_s) for s in by_file] == sorted(
            (s.channel, s.start_s) for s in by_file
        )
        assert [s.id for s in by_file] == [s[0] for s in stored]

        by_job, after = [], None
        while page := jobs.job_segments(session, split_job, after_id=after, limit=3):
            by_job += page
            after = page[-1][1].id
        assert [(rel, s.id) for rel, s in by_job] == [("call.wav", s[0]) for s in stored]
        with pytest.raises(ValueError, match="limit"):
            jobs.file_segments(session, row.id, limit=0)


def test_redelivery_never_duplicates_segments(
    settings, celery_worker, split_job, call, wait_for_job, default_model
):
    folder, _ = call
    finished_at = wait_for_job(split_job, timeout=60).finished_at
    row = files_of(settings, split_job)["call.wav"]
    before = segment_rows(settings, row.id)

    # The chunk again, in this process and through the broker to the real worker.
    sent: list = []
    assert pipeline.run_chunk(settings, split_job, [row.id], lambda *a: sent.append(a)) == 0
    done_before = chunk_tasks_done(settings, celery_worker.node)
    enqueue_chunk(split_job, [row.id])
    deadline = time.monotonic() + 30
    while chunk_tasks_done(settings, celery_worker.node) < done_before + 1:
        assert time.monotonic() < deadline, "the worker did not run the re-sent chunk"
        time.sleep(0.2)
    assert sent == []
    assert segment_rows(settings, row.id) == before
    assert files_of(settings, split_job)["call.wav"].processed_at == row.processed_at

    # A late second result of a finished file writes nothing.
    options = jobs.AnalysisOptions(channels="split")
    late = pipeline.analyze(settings, default_model, str(folder / "call.wav"), options)
    with session_scope(settings) as session:
        assert not processing.record_result(session, row.id, late, "late")
    assert segment_rows(settings, row.id) == before

    # A file made unfinished again (its lease expired) is rewritten, not appended to.
    with session_scope(settings) as session:
        session.execute(
            update(File)
            .where(File.id == row.id)
            .values(state="running", lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    with session_scope(settings) as session:
        assert processing.record_result(session, row.id, late, default_model.version)
    again = segment_rows(settings, row.id)
    assert [s[1:] for s in again] == [s[1:] for s in before]
    assert files_of(settings, split_job)["call.wav"].segment_count == len(before)
    with session_scope(settings) as session:
        job = jobs.get_job(session, split_job, tenant_id=DEFAULT_TENANT)
        assert (job.state, job.finished_at) == ("succeeded", finished_at)


def test_mix_job_gives_channel_0_and_short_clips_whole(
    settings, celery_worker, call, allowed_root, wait_for_job, default_model
):
    folder, turns = call
    mixed = allowed_root / f"mix-{uuid.uuid4().hex[:8]}"
    mixed.mkdir()
    (mixed / "call.wav").write_bytes((folder / "call.wav").read_bytes())
    clip = CLIPS[10]
    (mixed / clip.name).write_bytes(clip.read_bytes())
    job_id = submit(settings, mixed, {})  # defaults: channels=mix, segmentation=vad
    assert wait_for_job(job_id, timeout=60).state == "succeeded"
    rows = files_of(settings, job_id)

    call_row = rows["call.wav"]
    segments = segment_rows(settings, call_row.id)
    assert call_row.segment_count == len(segments) >= len(TURNS)
    assert {s[2] for s in segments} == {0}
    assert "channels" not in call_row.summary
    assert call_row.summary["n_segments"] == len(segments)

    # A clip no longer than one segment is classified whole, as predict_file does.
    clip_row = rows[clip.name]
    whole = predict_file(default_model, clip, max_duration_s=settings.max_duration_s)
    ((_, _, channel, start, end, label, confidence, _),) = segment_rows(settings, clip_row.id)
    assert (channel, start) == (0, 0.0) and end == pytest.approx(whole.duration_s, abs=1e-3)
    assert clip_row.label == label == whole.label
    assert clip_row.confidence == pytest.approx(whole.confidence)
    assert confidence == pytest.approx(whole.confidence)
    assert clip_row.summary["speech_s"] == pytest.approx(whole.duration_s, abs=1e-3)


def test_invalid_options_fail_the_job(settings, celery_worker, call, wait_for_job):
    folder, _ = call
    job_id = submit(settings, folder, {"channels": "quad"})
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "failed"
    assert job.error == "invalid job options: channels must be one of mix, split, got 'quad'"
    assert count_segments(settings, "job_id", job_id) == 0


def test_deleting_the_job_deletes_its_segments(settings, split_job, wait_for_job):
    wait_for_job(split_job, timeout=60)
    file_id = files_of(settings, split_job)["call.wav"].id
    assert count_segments(settings, "job_id", split_job) > 0
    with session_scope(settings) as session:
        jobs.delete_job(session, settings, split_job, tenant_id=DEFAULT_TENANT)
    assert count_segments(settings, "job_id", split_job) == 0
    assert count_segments(settings, "file_id", file_id) == 0  # ON DELETE CASCADE
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).where(File.job_id == split_job)) == 0


# --- options and channel names (no database) -----------------------------------------------------


def test_analysis_options():
    assert (jobs.CHANNEL_MODES, jobs.SEGMENTATIONS) == (CHANNEL_MODES, SEGMENTATIONS)
    assert jobs.analysis_options(None) == jobs.AnalysisOptions("mix", "vad")
    assert jobs.analysis_options({"recursive": True, "channels": ""}).channels == "mix"
    opts = jobs.analysis_options({"channels": "split", "segmentation": "fixed"})
    assert (opts.channels, opts.segmentation) == ("split", "fixed")
    with pytest.raises(jobs.InvalidOptionsError, match="segmentation must be one of vad"):
        jobs.analysis_options({"segmentation": "energy"})
    assert isinstance(jobs.InvalidOptionsError("x"), ValueError)


def test_channel_names(tmp_path):
    default = load_settings({"AER_DATA_DIR": str(tmp_path)})
    assert default.channel_names == ((0, "agent"), (1, "customer"))
    assert [jobs.channel_name(default, i) for i in range(3)] == ["agent", "customer", "channel 2"]
    assert jobs.channel_name(default, 0, channels="mix") == "mix"
    custom = load_settings(
        {"AER_DATA_DIR": str(tmp_path), "AER_CHANNEL_NAMES": " 1 = caller , 0=advisor,3=supervisor"}
    )
    assert custom.channel_names == ((0, "advisor"), (1, "caller"), (3, "supervisor"))
    assert jobs.channel_name(custom, 3) == "supervisor"


@pytest.mark.parametrize(
    "value", ["agent,customer", "0=agent,0=boss", "0=x,1=x", "-1=x", "0=", "a=b", "999=x"]
)
def test_bad_channel_names_are_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="AER_CHANNEL_NAMES"):
        load_settings({"AER_DATA_DIR": str(tmp_path), "AER_CHANNEL_NAMES": value})
