"""Dataset readers: RAVDESS names, folders, manifests, and what gets skipped."""

from pathlib import Path

import pytest

from core.datasets import (
    EMOTIONS,
    parse_ravdess_name,
    read_dataset,
    read_folder,
    read_manifest,
    read_ravdess,
)
from core.errors import DatasetError
from core.samples import demo_folder

FIXTURES = demo_folder()
SHARED_RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ravdess"


@pytest.mark.parametrize(
    ("name", "emotion", "intensity", "actor", "speaker"),
    [
        ("03-01-05-01-02-01-12.flac", "angry", 1, 12, "actor12"),
        ("03-01-01-01-01-01-01.wav", "neutral", 1, 1, "actor01"),
        ("03-01-08-02-02-02-24.flac", "surprised", 2, 24, "actor24"),
        ("/some/dir/Actor_07/03-01-07-02-01-01-07.flac", "disgust", 2, 7, "actor07"),
    ],
)
def test_parse_valid_names(name, emotion, intensity, actor, speaker):
    parsed = parse_ravdess_name(name)
    assert parsed.emotion == emotion
    assert parsed.intensity == intensity
    assert parsed.actor == actor
    assert parsed.speaker == speaker


@pytest.mark.parametrize(
    "name",
    [
        "03-01-09-01-02-01-12.flac",  # emotion code out of range
        "03-01-00-01-02-01-12.flac",
        "03-01-01-02-01-01-01.flac",  # neutral has no strong intensity
        "03-01-05-03-02-01-12.flac",  # intensity 03
        "03-01-05-01-03-01-12.flac",  # statement 03
        "03-01-05-01-02-03-12.flac",  # repetition 03
        "03-01-05-01-02-01-00.flac",  # actor 00
        "03-01-05-01-02-01.flac",  # six fields
        "03-01-5-01-02-01-12.flac",  # one-digit field
        "03-01-xx-01-02-01-12.flac",
        "angry_take1.wav",
        "",
    ],
)
def test_parse_invalid_names(name):
    with pytest.raises(DatasetError):
        parse_ravdess_name(name)


def test_read_ravdess_fixtures():
    ds = read_ravdess(FIXTURES)
    assert len(ds) == 16
    assert ds.classes == EMOTIONS
    assert all(n == 2 for n in ds.summary()["class_counts"].values())
    assert ds.has_speakers and ds.summary()["n_speakers"] == 8
    assert [Path(p).name for p, _ in ds.skipped] == ["README.md"]


def test_read_ravdess_reports_bad_names(tmp_path):
    good = tmp_path / "03-01-03-01-01-01-05.wav"
    bad = tmp_path / "03-01-09-01-01-01-05.wav"
    other = tmp_path / "notes.txt"
    for p in (good, bad, other):
        p.write_bytes(b"x")
    ds = read_ravdess(tmp_path)
    assert [(s.label, s.speaker) for s in ds.samples] == [("happy", "actor05")]
    reasons = dict(ds.skipped)
    assert "emotion code 09" in reasons[str(bad)]
    assert "not an audio" in reasons[str(other)]


def test_read_folder_labels_from_first_folder(tmp_path):
    (tmp_path / "happy" / "s1").mkdir(parents=True)
    (tmp_path / "sad").mkdir()
    (tmp_path / "happy" / "s1" / "a.wav").write_bytes(b"x")
    (tmp_path / "sad" / "b.flac").write_bytes(b"x")
    (tmp_path / "sad" / "b.txt").write_bytes(b"x")
    (tmp_path / "loose.wav").write_bytes(b"x")
    ds = read_folder(tmp_path)
    assert sorted(ds.labels) == ["happy", "sad"]
    assert ds.speakers == [None, None] and not ds.has_speakers
    reasons = {Path(p).name: r for p, r in ds.skipped}
    assert set(reasons) == {"b.txt", "loose.wav"}
    assert "no label folder" in reasons["loose.wav"]
    assert read_dataset(tmp_path).labels == ds.labels  # not RAVDESS names -> generic reader


def test_read_manifest_relative_paths_and_skips(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(b"x")
    (tmp_path / "audio" / "b.wav").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,speaker\n"
        "audio/a.wav,happy,spk1\n"
        f"{tmp_path / 'audio' / 'b.wav'},sad,\n"
        "audio/missing.wav,sad,spk2\n"
        "audio/a.wav,,spk1\n"
    )
    ds = read_manifest(manifest)
    assert [(s.path, s.label, s.speaker) for s in ds.samples] == [
        (tmp_path / "audio" / "a.wav", "happy", "spk1"),
        (tmp_path / "audio" / "b.wav", "sad", None),
    ]
    reasons = [r for _, r in ds.skipped]
    assert len(reasons) == 2
    assert any("file not found" in r for r in reasons)
    assert any("empty label" in r for r in reasons)
    assert read_dataset(manifest).labels == ds.labels


def test_read_manifest_needs_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,emotion\na.wav,happy\n")
    with pytest.raises(DatasetError, match="'path' and 'label'"):
        read_manifest(manifest)


def test_empty_or_missing_sources_raise(tmp_path):
    with pytest.raises(DatasetError):
        read_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no usable"):
        read_dataset(tmp_path)


def test_restrict_keeps_only_asked_classes():
    ds = read_dataset(FIXTURES).restrict(["calm", "happy", "fearful", "disgust"])
    assert ds.classes == ("calm", "happy", "fearful", "disgust")
    assert len(ds) == 8
    with pytest.raises(DatasetError, match="not in the data"):
        ds.restrict(["bored"])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_RAVDESS.is_dir(), reason="needs ../shared/data/ravdess")
def test_full_ravdess_layout():
    ds = read_dataset(SHARED_RAVDESS)
    summary = ds.summary()
    assert summary["n_files"] == 1440 and summary["n_speakers"] == 24
    assert summary["class_counts"]["neutral"] == 96
    assert all(summary["class_counts"][e] == 192 for e in EMOTIONS[1:])
