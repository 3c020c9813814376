"""Zip archives of uploads: bombs stop at the limits, zips inside zips are extracted to a bounded
depth or fail as a row, and extracted contents go when the job ends.

The pipeline runs in this process (enumeration, then its chunks) over the real database and the
real default model; the enqueue callable only collects the chunks.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from api.store import jobs
from api.store.db import session_scope
from api.store.tables import File, Job
from api.store.uploads import ARCHIVES_DIR, STAGING_DIR, upload_dir
from tests.conftest import FIXTURE_CLIPS, record_upload_job
from worker import pipeline
from worker.sources import ExtractLimitError, extract_zip, list_upload

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
MB = 2**20


def zip_bytes(members: dict[str, bytes], *, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def bomb(size: int) -> bytes:
    """A zip of one highly compressible member of ``size`` bytes (about a thousandth of it)."""
    return zip_bytes({"zeros.wav": bytes(size)}, compression=zipfile.ZIP_DEFLATED)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- limits --------------------------------------------------------------------------------------


def test_zip_bomb_stops_at_the_per_archive_limit(tmp_path):
    (tmp_path / "bomb.zip").write_bytes(bomb(64 * MB))
    (tmp_path / "fine.zip").write_bytes(zip_bytes({"a.wav": b"a" * 1000}))
    listing = list_upload(
        tmp_path, max_files=10, max_bytes=256 * MB, max_archive_bytes=8 * MB, max_depth=2
    )
    assert [rel for rel, _ in listing.files] == ["fine.zip/a.wav"]
    [(rel, _, exc)] = listing.failed
    assert rel == "bomb.zip" and isinstance(exc, ExtractLimitError)
    assert "8 MB per archive" in str(exc) and "AER_MAX_ARCHIVE_EXTRACT_MB" in str(exc)
    assert not (tmp_path / "bomb.zip").exists()  # no extraction left behind
    assert not any((tmp_path / STAGING_DIR).iterdir())
    assert disk_bytes(tmp_path) < MB


def test_archives_of_one_job_share_the_job_limit(tmp_path):
    for name in ("a.zip", "b.zip", "c.zip"):
        (tmp_path / name).write_bytes(zip_bytes({"x.wav": b"x" * (3 * MB)}))
    listing = list_upload(
        tmp_path, max_files=10, max_bytes=7 * MB, max_archive_bytes=4 * MB, max_depth=2
    )
    assert [rel for rel, _ in listing.files] == ["a.zip/x.wav", "b.zip/x.wav"]
    [(rel, _, exc)] = listing.failed
    assert rel == "c.zip" and "AER_MAX_EXTRACT_MB" in str(exc)
    extracted = disk_bytes(tmp_path) - disk_bytes(tmp_path / ARCHIVES_DIR)
    assert extracted == 6 * MB  # two archives; nothing of the third


def test_bomb_inside_a_zip_counts_against_the_outer_archive(tmp_path):
    inner = bomb(32 * MB)
    (tmp_path / "outer.zip").write_bytes(zip_bytes({"ok.wav": b"1", "inner.zip": inner}))
    listing = list_upload(
        tmp_path, max_files=10, max_bytes=256 * MB, max_archive_bytes=4 * MB, max_depth=2
    )
    assert listing.files == []
    [(rel, _, exc)] = listing.failed
    assert rel == "outer.zip" and "'inner.zip' expands to more than" in str(exc)
    assert isinstance(exc, ExtractLimitError)
    assert disk_bytes(tmp_path) < MB


def test_declared_sizes_refuse_a_bomb_before_anything_is_written(tmp_path):
    """What the directory declares is checked first; the bytes written are counted as well (a
    second guard: zipfile never yields more than a member declares)."""
    from worker.sources import ExtractBudget

    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"1.wav": b"1" * (2 * MB), "2.wav": b"2" * (2 * MB)}))
    budget = ExtractBudget(job_bytes=3 * MB, archive_bytes=3 * MB, files=10)
    (tmp_path / "out").mkdir()
    with pytest.raises(ExtractLimitError, match="per archive"):
        extract_zip(archive, tmp_path / "out", max_files=10, budget=budget)
    assert disk_bytes(tmp_path / "out") == 0


def test_a_full_disk_fails_the_archive_as_storage(tmp_path):
    """A real write error from the kernel: a child process may write files of 1 MB at most
    (``RLIMIT_FSIZE``, the nearest thing to a full disk that needs no privileges)."""
    import subprocess
    import sys
    import textwrap

    archive = tmp_path / "big.zip"
    archive.write_bytes(zip_bytes({"a.wav": b"a" * (3 * MB)}))
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({MB}, {MB}))
        from worker.sources import StorageError, list_upload
        listing = list_upload(Path({str(tmp_path)!r}), max_files=10, max_bytes={64 * MB})
        [(rel, _, exc)] = listing.failed
        assert rel == "big.zip" and isinstance(exc, StorageError), exc
        print(exc.code, exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("insufficient_storage no disk space left")
    assert disk_bytes(tmp_path) - disk_bytes(tmp_path / ARCHIVES_DIR) == 0  # nothing half-written


# --- nested archives -----------------------------------------------------------------------------


def nested_upload(folder: Path) -> None:
    """outer.zip holds a clip, inner.zip (a clip and deep.zip, which holds a clip), broken.zip."""
    clip = CLIPS[0].read_bytes()
    deep = zip_bytes({"c.flac": clip})
    inner = zip_bytes({"b.flac": clip, "deep.zip": deep})
    broken = b"PK\x03\x04" + b"\x07" * 64
    outer = zip_bytes({"a.flac": clip, "sub/inner.zip": inner, "broken.zip": broken})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "outer.zip").write_bytes(outer)


@pytest.mark.parametrize(
    ("depth", "listed", "too_deep"),
    [
        (0, ["outer.zip/a.flac"], "outer.zip/sub/inner.zip"),
        (
            1,
            ["outer.zip/a.flac", "outer.zip/sub/inner.zip/b.flac"],
            "outer.zip/sub/inner.zip/deep.zip",
        ),
        (
            2,
            [
                "outer.zip/a.flac",
                "outer.zip/sub/inner.zip/b.flac",
                "outer.zip/sub/inner.zip/deep.zip/c.flac",
            ],
            None,
        ),
    ],
)
def test_nested_zips_are_extracted_to_a_bounded_depth(tmp_path, depth, listed, too_deep):
    nested_upload(tmp_path)
    for _ in range(2):  # and again, as after a crash: the same answer
        listing = list_upload(tmp_path, max_files=10, max_bytes=64 * MB, max_depth=depth)
        assert [rel for rel, _ in listing.files] == listed
        failed = {rel: exc for rel, _, exc in listing.failed}
        broken = failed.pop("outer.zip/broken.zip")
        assert "broken.zip" in str(broken)
        assert broken.code == ("nested_archive" if depth == 0 else "bad_archive")
        assert sorted(failed) == ([too_deep] if too_deep else [])
        if too_deep:
            assert failed[too_deep].code == "nested_archive"
            assert f"more than {depth} levels" in str(failed[too_deep])
            assert "AER_MAX_ARCHIVE_DEPTH" in str(failed[too_deep])


# --- the pipeline: rows, and what stays on disk --------------------------------------------------


def run_job(settings, job_id: str) -> Job:
    """Enumerate the job and process its chunks in this process; returns the job at the end."""
    chunks: list[tuple[str, list[int]]] = []
    pipeline.run_enumeration(settings, job_id, lambda j, ids: chunks.append((j, ids)))
    while chunks:
        pipeline.run_chunk(settings, *chunks.pop(0), lambda j, ids: chunks.append((j, ids)))
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def create_upload_job(settings) -> tuple[str, Path]:
    job_id = jobs.new_job_id()
    folder = upload_dir(settings, job_id)
    nested_upload(folder)
    shutil.copy(CLIPS[1], folder / "direct.flac")
    record_upload_job(settings, job_id, folder)
    return job_id, folder


def test_nested_zip_is_a_row_never_skipped(settings, default_model):
    settings = settings.model_copy(update={"max_archive_depth": 1})
    job_id, folder = create_upload_job(settings)
    job = run_job(settings, job_id)
    assert job.state == "completed_with_errors", job.error
    with session_scope(settings) as session:
        rows = {
            f.rel_path: (f.state, f.error_code)
            for f in session.query(File).filter_by(job_id=job_id)
        }
    assert rows == {
        "direct.flac": ("done", None),
        "outer.zip/a.flac": ("done", None),
        "outer.zip/sub/inner.zip/b.flac": ("done", None),
        "outer.zip/sub/inner.zip/deep.zip": ("failed", "nested_archive"),
        "outer.zip/broken.zip": ("failed", "bad_archive"),
    }


@pytest.mark.parametrize("keep", [False, True])
def test_extracted_contents_go_when_the_job_ends(settings, default_model, keep):
    settings = settings.model_copy(update={"keep_extracted": keep})
    job_id, folder = create_upload_job(settings)
    assert run_job(settings, job_id).state == "completed_with_errors"
    assert (folder / ARCHIVES_DIR / "outer.zip").is_file()  # the upload itself stays
    assert (folder / "direct.flac").is_file()
    assert (folder / "outer.zip").is_dir() is keep
    assert not (folder / STAGING_DIR).exists() or keep


def test_extractions_go_when_the_job_fails(settings):
    settings = settings.model_copy(update={"keep_extracted": False})  # the default keeps them
    job_id = jobs.new_job_id()
    folder = upload_dir(settings, job_id)
    folder.mkdir(parents=True)
    (folder / "notes.zip").write_bytes(zip_bytes({"readme.txt": b"no audio here"}))
    record_upload_job(settings, job_id, folder)
    job = run_job(settings, job_id)
    assert job.state == "failed" and job.error == "no audio files found"
    assert not (folder / "notes.zip").exists()
    assert (folder / ARCHIVES_DIR / "notes.zip").is_file()
