"""Feature cache: content-keyed hits and misses, transforms in the key, failures reported."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.audio import load
from core.cache import degradation_seed, extract_features, file_sha256
from core.degrade import parse_degradation
from core.features import get_feature_set
from core.samples import demo_folder

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))[:3]


@pytest.fixture
def fs():
    return get_feature_set("seed180")


class CountingGain:
    """A transform that counts its calls (works in-process, n_jobs=1)."""

    spec = "gain:0.5"

    def __init__(self):
        self.calls = 0

    def __call__(self, y, sr, rng):
        self.calls += 1
        return y * 0.5


def test_degradation_seed_reproduces_a_degraded_extraction(fs):
    spec, clip = "noise:10", CLIPS[0]
    cached = extract_features([clip], fs, n_jobs=1, progress=False, transform=spec).X[0]
    rng = np.random.default_rng(degradation_seed(file_sha256(clip), spec))
    y = parse_degradation(spec)(load(clip, sr=fs.sample_rate), fs.sample_rate, rng)
    np.testing.assert_allclose(fs(y, fs.sample_rate), cached, rtol=1e-6)


def test_second_extraction_reads_the_cache(tmp_path, fs):
    first = extract_features(CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert (first.n_computed, first.n_cached) == (3, 0)
    assert first.X.shape == (3, fs.dim) and first.X.dtype == np.float32
    second = extract_features(CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert (second.n_computed, second.n_cached) == (0, 3)
    np.testing.assert_array_equal(first.X, second.X)
    assert len(list((tmp_path / fs.id).rglob("*.npy"))) == 3


def test_cache_key_is_content_not_path(tmp_path, fs):
    extract_features(CLIPS[:1], fs, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    copy = tmp_path / "renamed.flac"
    shutil.copy(CLIPS[0], copy)
    again = extract_features([copy], fs, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 1)
    assert file_sha256(copy) == file_sha256(CLIPS[0])


def test_transform_is_part_of_the_key(tmp_path, fs):
    clean = extract_features(CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False)
    gain = CountingGain()
    first = extract_features(
        CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False, transform=gain
    )
    assert gain.calls == 3 and first.n_computed == 3
    assert not np.allclose(first.X, clean.X)  # halving the gain moves the mel/MFCC features
    second = extract_features(
        CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False, transform=gain
    )
    assert gain.calls == 3 and second.n_cached == 3


def test_degradation_spec_is_reproducible(tmp_path, fs):
    a = extract_features(
        CLIPS[:2], fs, cache_dir=None, n_jobs=1, progress=False, transform="noise:10"
    )
    b = extract_features(
        CLIPS[:2], fs, cache_dir=None, n_jobs=1, progress=False, transform="noise:10"
    )
    np.testing.assert_array_equal(a.X, b.X)  # per-file RNG seeded from content + spec
    with pytest.raises(ValueError):
        extract_features(CLIPS, fs, cache_dir=None, progress=False, transform="reverb:big")


def test_failed_files_are_reported_not_fatal(tmp_path, fs):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(CLIPS[0].read_bytes()[:200])
    text = tmp_path / "notes.wav"
    text.write_text("hello")
    paths = [CLIPS[0], corrupt, tmp_path / "missing.wav", text, CLIPS[1]]
    ex = extract_features(paths, fs, cache_dir=tmp_path / "c", n_jobs=2, progress=False)
    assert ex.ok.tolist() == [True, False, False, False, True]
    assert ex.X.shape == (2, fs.dim)
    assert [Path(p).name for p, _ in ex.failed] == ["corrupt.flac", "missing.wav", "notes.wav"]
    assert all(reason for _, reason in ex.failed)
