"""Uploads named with folders (``d1/call.flac``) and zip entry names in legacy encodings: how the
API stores them and how the worker lists them (real files, real zips built here)."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from api.store.uploads import safe_name
from worker.sources import extract_zip, list_upload, member_name

NAME = "通话_客户.flac"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("d1/call.flac", "d1/call.flac"),
        ("d1\\sub\\call.flac", "d1/sub/call.flac"),
        ("/abs/call.flac", "abs/call.flac"),
        ("../../call.flac", "call.flac"),
        ("a/./b/../call.flac", "a/call.flac"),
        ("x/../../../call.flac", "call.flac"),
        (".git/.hidden/call.flac", "git/hidden/call.flac"),
        ("d1//\x07call.flac", "d1/call.flac"),
        (f"客户/{NAME}", f"客户/{NAME}"),
    ],
)
def test_upload_paths_are_kept_safe_and_normalized(raw, stored):
    assert safe_name(raw, set(), 0) == stored


def test_upload_paths_are_unique_and_never_a_file_over_a_folder():
    taken: set[str] = set()
    names = [
        safe_name(n, taken, i)
        for i, n in enumerate(
            ["d1/call.flac", "d2/call.flac", "D1/CALL.flac", "d1", "x.zip", "x.zip/a.wav"]
        )
    ]
    assert names[:3] == ["d1/call.flac", "d2/call.flac", "D1/CALL-1.flac"]
    assert names[3] == "d1-1"  # a file cannot take the name of a folder
    assert names[5] == "a.wav"  # nor a folder the name of a file (or of an archive's folder)


def _zip_with_raw_name(path: Path, raw: bytes, data: bytes, extra: bytes = b"") -> None:
    """A zip with one stored entry whose header name is the bytes ``raw`` and the UTF-8 flag
    unset (zipfile would set it for a non-ASCII name: write a same-length placeholder, then
    replace it in the local header and the central directory)."""
    placeholder = b"Q" * len(raw)
    info = zipfile.ZipInfo(placeholder.decode())
    info.extra = extra
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(info, data)
    blob = path.read_bytes()
    assert blob.count(placeholder) == 2
    path.write_bytes(blob.replace(placeholder, raw))


def _unicode_path_field(raw: bytes, name: str) -> bytes:
    body = b"\x01" + struct.pack("<I", zlib.crc32(raw)) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("utf8_flag", NAME),  # zipfile writes the flag for non-ASCII names
        ("utf8_no_flag", NAME),  # many archivers (older 7-Zip, macOS, Windows) do this
        ("gbk_unicode_extra", NAME),  # Info-ZIP: legacy bytes plus a 0x7075 field
        ("gbk_stale_extra", None),  # the field's CRC does not match: cp437, as zipfile reads
        ("cp437", "café.wav"),  # a DOS archiver: bytes that are not UTF-8
    ],
)
def test_zip_entry_names_decode_as_the_archiver_meant(tmp_path, how, expected):
    archive = tmp_path / "a.zip"
    data = b"RIFF" + b"\x00" * 40
    gbk = NAME.encode("gbk")
    if how == "utf8_flag":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(NAME, data)
    elif how == "utf8_no_flag":
        _zip_with_raw_name(archive, NAME.encode(), data)
    elif how == "gbk_unicode_extra":
        _zip_with_raw_name(archive, gbk, data, _unicode_path_field(gbk, NAME))
    elif how == "gbk_stale_extra":
        _zip_with_raw_name(archive, gbk, data, _unicode_path_field(b"other", NAME))
        expected = gbk.decode("cp437")
    else:
        _zip_with_raw_name(archive, "café.wav".encode("cp437"), data)
    with zipfile.ZipFile(archive) as zf:
        (info,) = zf.infolist()
        assert bool(info.flag_bits & 0x800) == (how == "utf8_flag")
        assert member_name(info) == expected
    dest = tmp_path / "out"
    assert extract_zip(archive, dest, max_files=5, max_bytes=10_000) == 1
    assert (dest / expected).read_bytes() == data


def test_list_upload_keeps_folders_and_extracts_nested_zips(tmp_path):
    for rel in ("d1/call.flac", "d2/call.flac", "d2/deeper/x.wav", "top.mp3"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"audio")
    with zipfile.ZipFile(tmp_path / "d2" / "more.zip", "w") as zf:
        zf.writestr("in/1.wav", b"1")
        zf.writestr("notes.txt", b"not audio")
    (tmp_path / "d1" / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x07" * 64)
    for _ in range(2):  # and again, as after a crash: the same answer
        listing = list_upload(tmp_path, max_files=10, max_bytes=1000)
        assert [rel for rel, _ in listing.files] == [
            "d1/call.flac",
            "d2/call.flac",
            "d2/deeper/x.wav",
            "d2/more.zip/in/1.wav",
            "top.mp3",
        ]
        assert all(Path(path) == tmp_path / rel for rel, path in listing.files)
        assert [rel for rel, _, _ in listing.failed] == ["d1/broken.zip"]
