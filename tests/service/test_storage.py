"""The storage interface, the same tests over a local folder and a real S3-compatible server;
and uploads listed from a bucket: zips extracted with the local checks and limits, once, and
again from the start after a crash mid-way."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from api.store.storage import LocalStorage, S3Storage, StoredTooLargeError, open_storage
from tests.conftest import FIXTURE_CLIPS
from worker.sources import ExtractLimitError, SourceError
from worker.uploads import MARKERS, list_stored_upload, remove_stored_extractions

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
MB = 2**20


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "data")
    return S3Storage(request.getfixturevalue("bucket"), "aer/env")


def a_file(folder: Path, data: bytes, name: str = "part") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_objects_round_trip(storage, tmp_path):
    data = bytes(range(256)) * 100
    part = a_file(tmp_path / "spool", data)
    storage.put_file("uploads/j1/d1/call.flac", part)
    assert not part.exists()  # consumed: moved, or streamed then deleted
    storage.put_bytes("uploads/j1/.extracted/a.zip.json", b'{"bytes": 1}')
    assert storage.get_bytes("uploads/j1/.extracted/a.zip.json") == b'{"bytes": 1}'
    assert storage.get_bytes("uploads/j1/missing") is None
    info = storage.stat("uploads/j1/d1/call.flac")
    assert info.size == len(data) and info.key == "uploads/j1/d1/call.flac" and info.etag
    assert storage.stat("uploads/j1/nothing") is None
    assert storage.exists("uploads/j1/d1/call.flac") and not storage.exists("uploads/j1/d1")
    location = storage.location("uploads/j1/d1/call.flac")
    assert storage.key_of(location) == "uploads/j1/d1/call.flac"
    assert storage.key_of("s3://elsewhere/x") is None and storage.key_of("/elsewhere/x") is None
    assert b"".join(storage.read_range("uploads/j1/d1/call.flac", 100, 1099)) == data[100:1100]
    copy = tmp_path / "copy"
    storage.download("uploads/j1/d1/call.flac", copy)
    assert copy.read_bytes() == data
    with pytest.raises(StoredTooLargeError):
        storage.download("uploads/j1/d1/call.flac", copy, limit=1000)
    with pytest.raises(FileNotFoundError):
        storage.download("uploads/j1/none.flac", copy)


def test_listing_folders_and_deleting(storage, tmp_path):
    for i in range(3):
        storage.put_file(f"uploads/j{i}/a.flac", a_file(tmp_path / "spool", b"x" * (i + 1)))
    storage.put_file("uploads/j0/deep/b.flac", a_file(tmp_path / "spool", b"yy"))
    storage.put_bytes("uploads/.incoming/part-1", b"spooled")
    listed = storage.list("uploads/j0")
    assert not isinstance(listed, list)  # lazy
    assert [(i.key, i.size) for i in listed] == [
        ("uploads/j0/a.flac", 1),
        ("uploads/j0/deep/b.flac", 2),
    ]
    assert storage.folders("uploads") == ["j0", "j1", "j2"]  # hidden ones skipped
    assert storage.modified("uploads/j0") is not None and storage.modified("uploads/none") is None
    assert storage.delete_folder("uploads/j0") == 3
    assert list(storage.list("uploads/j0")) == [] and storage.delete_folder("uploads/j0") == 0
    assert storage.delete("uploads/j1/a.flac") == 2 and storage.delete("uploads/j1/a.flac") == 0
    assert [i.key for i in storage.list("uploads/j2")] == ["uploads/j2/a.flac"]


def test_many_objects_are_listed_and_deleted_page_by_page(storage):
    keys = [f"models/t/{i:05d}.json" for i in range(1003)]
    for key in keys:
        storage.put_bytes(key, b"{}")
    assert [i.key for i in storage.list("models/t")] == keys
    assert storage.delete_folder("models/t") == 2 * len(keys)
    assert list(storage.list("models/t")) == []


def test_open_storage_follows_the_setting(bucket, tmp_path):
    from api.store.settings import load_settings

    local = open_storage(load_settings({"AER_DATA_DIR": str(tmp_path)}))
    assert isinstance(local, LocalStorage) and local.local
    assert local.location("uploads/j") == str(tmp_path.resolve() / "uploads" / "j")
    url = f"s3://{bucket}/aer/prod/"
    remote = open_storage(load_settings({"AER_DATA_DIR": str(tmp_path), "AER_STORAGE_URL": url}))
    assert isinstance(remote, S3Storage) and not remote.local
    assert remote.location("uploads/j") == f"s3://{bucket}/aer/prod/uploads/j"


# --- uploads in a bucket ---------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], *, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def bucket_upload(bucket, tmp_path):
    """An upload folder in a bucket: a clip, a good zip (with an inner zip), a bomb, a bad zip."""
    storage = S3Storage(bucket, "aer")
    clip = CLIPS[0].read_bytes()
    inner = zip_bytes({"in.flac": clip, "deeper.zip": zip_bytes({"x.flac": clip})})
    files = {
        "direct.flac": clip,
        "d1/calls.zip": zip_bytes(
            {
                "a/one.flac": clip,
                "readme.txt": b"no",
                "__MACOSX/._one.flac": b"junk",
                "inner.zip": inner,
            }
        ),
        "bomb.zip": zip_bytes({"zeros.wav": bytes(16 * MB)}, compression=zipfile.ZIP_DEFLATED),
        "bad.zip": b"PK\x03\x04" + b"\x00" * 40,
    }
    for rel, data in files.items():
        storage.put_file(f"uploads/job/{rel}", a_file(tmp_path / "spool", data))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return storage, scratch


def summary(found) -> tuple:
    return found.files, [(rel, at, str(exc), exc.code) for rel, at, exc in found.failed]


def listing(storage, scratch, **limits):
    limits = {
        "max_files": 50,
        "max_bytes": 64 * MB,
        "max_archive_bytes": 8 * MB,
        "max_depth": 1,
    } | limits
    return list_stored_upload(storage, "uploads/job", scratch=scratch, **limits)


def test_zips_in_a_bucket_are_extracted_with_the_local_limits(bucket_upload):
    storage, scratch = bucket_upload
    found = listing(storage, scratch)
    assert [rel for rel, _ in found.files] == [
        "d1/calls.zip/a/one.flac",
        "d1/calls.zip/inner.zip/in.flac",
        "direct.flac",
    ]
    assert all(loc == storage.location(f"uploads/job/{rel}") for rel, loc in found.files)
    failed = {rel: exc for rel, _, exc in found.failed}
    assert set(failed) == {"bad.zip", "bomb.zip", "d1/calls.zip/inner.zip/deeper.zip"}
    assert isinstance(failed["bomb.zip"], ExtractLimitError)
    assert failed["bad.zip"].code == "bad_archive"
    assert failed["d1/calls.zip/inner.zip/deeper.zip"].code == "nested_archive"
    stored = {i.key for i in storage.list("uploads/job")}
    assert "uploads/job/d1/calls.zip/readme.txt" not in stored  # only listed members are stored
    assert not any(k.startswith("uploads/job/bomb.zip/") for k in stored)
    assert list(scratch.iterdir()) == []  # the scratch folder is left empty


def test_a_bucket_listing_is_restartable(bucket_upload):
    storage, scratch = bucket_upload
    first = listing(storage, scratch)
    marker = f"uploads/job/{MARKERS}/d1/calls.zip.json"
    record = json.loads(storage.get_bytes(marker))
    assert record["bytes"] > 0
    assert summary(listing(storage, scratch)) == summary(first)  # nothing extracted twice
    # A worker that died mid-way: members stored, no marker yet. They are not listed, and
    # the archive is extracted again from the start.
    storage.delete(marker)
    storage.put_bytes("uploads/job/d1/calls.zip/a/stale.flac", b"half")
    assert "uploads/job/d1/calls.zip/a/stale.flac" not in [loc for _, loc in first.files]
    again = listing(storage, scratch)
    assert [rel for rel, _ in again.files] == [rel for rel, _ in first.files]
    assert not storage.exists("uploads/job/d1/calls.zip/a/stale.flac")
    # The job's byte budget counts extractions done before a restart.
    storage.delete("uploads/job/bomb.zip")
    storage.put_bytes("uploads/job/z.zip", zip_bytes({"z.flac": b"z" * 2000}))
    limited = listing(storage, scratch, max_bytes=record["bytes"] + 1000)
    failed = {rel: str(exc) for rel, _, exc in limited.failed}
    assert "AER_MAX_EXTRACT_MB" in failed["z.zip"]


def test_stored_extractions_are_removed_and_listed_again(bucket_upload):
    storage, scratch = bucket_upload
    first = listing(storage, scratch)
    freed = remove_stored_extractions(storage, "uploads/job")
    assert freed > 0
    keys = {i.key for i in storage.list("uploads/job")}
    assert keys == {
        f"uploads/job/{r}" for r in ("direct.flac", "d1/calls.zip", "bomb.zip", "bad.zip")
    }
    assert listing(storage, scratch).files == first.files


def test_a_bucket_upload_over_the_file_limit_or_gone_fails(bucket_upload, bucket):
    storage, scratch = bucket_upload
    for name in ("x1.flac", "x2.flac"):
        storage.put_bytes(f"uploads/job/{name}", b"audio")
    with pytest.raises(SourceError, match="more than 2"):
        listing(storage, scratch, max_files=2)
    with pytest.raises(SourceError, match="gone"):
        list_stored_upload(
            S3Storage(bucket, "other"), "uploads/job", scratch=scratch, max_files=5, max_bytes=MB
        )


def test_members_of_the_services_own_zips_may_be_fetched_past_the_fetch_limit(bucket, tmp_path):
    from api.store.fetch import FetchTooLargeError, local_copy
    from api.store.settings import load_settings

    env = {"AER_DATA_DIR": str(tmp_path), "AER_MAX_UPLOAD_MB": "1", "AER_MAX_FETCH_MB": "1"}
    settings = load_settings({**env, "AER_STORAGE_URL": f"s3://{bucket}/aer"})
    storage = open_storage(settings)
    data = b"w" * (3 * MB // 2)  # a member may expand to AER_MAX_ARCHIVE_EXTRACT_MB (2 MB)
    storage.put_bytes("uploads/j/a.zip/x.wav", data)
    with local_copy(settings, storage.location("uploads/j/a.zip/x.wav")) as path:
        assert path.read_bytes() == data and path.is_relative_to(settings.temp_dir)
    assert not path.exists()
    S3Storage(bucket, "elsewhere").put_bytes("x.wav", data)
    with pytest.raises(FetchTooLargeError), local_copy(settings, f"s3://{bucket}/elsewhere/x.wav"):
        pass
