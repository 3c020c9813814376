"""Feature sets: registry, input checks, determinism, seed180 against the seed's librosa code."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
import soundfile

from core.errors import FeatureSetError, NonFiniteAudioError, TooShortError
from core.features import FeatureSet, feature_sets, get_feature_set, spectral
from core.samples import demo_clips

SR = 16_000
FIXTURES = demo_clips()
BLOCKS = {"mfcc": slice(0, 40), "chroma": slice(40, 52), "mel": slice(52, 180)}


def seed_features(X: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """The seed's extract_feature body (librosa, three STFTs), and the tuning it estimated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty-tuning warning on silence
        stft = np.abs(librosa.stft(X))
        mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sample_rate, n_mfcc=40).T, axis=0)
        chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
        mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sample_rate).T, axis=0)
        tuning = librosa.estimate_tuning(S=stft, sr=sample_rate)
    return np.hstack((mfccs, chroma, mel)), tuning


def synthetic(kind: str, seconds: float = 1.5) -> np.ndarray:
    """Deterministic test signals: a voiced-like harmonic tone with vibrato, a chirp, noise."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    if kind == "harmonic":
        f0 = 180 + 15 * np.sin(2 * np.pi * 4 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        y = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.hanning(t.size)
    elif kind == "chirp":
        y = np.sin(2 * np.pi * (100 * t + 1500 * t**2))
    else:
        y = rng.standard_normal(t.size)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def signals() -> list[tuple[str, np.ndarray]]:
    out = [(kind, synthetic(kind)) for kind in ("harmonic", "chirp", "noise")]
    for path in FIXTURES:
        y, sr = soundfile.read(path, dtype="float32")
        assert sr == SR
        out.append((path.name, y))
    return out


SIGNALS = signals()
IDS = [name for name, _ in SIGNALS]


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_seed180() -> None:
    ids = [fs.id for fs in feature_sets()]
    assert "seed180@1" in ids
    assert len(ids) == len(set(ids))


def test_get_feature_set_latest_and_exact() -> None:
    fs = get_feature_set("seed180")
    assert isinstance(fs, FeatureSet)
    assert (fs.name, fs.version, fs.dim, fs.sample_rate) == ("seed180", 1, 180, SR)
    assert get_feature_set("seed180", 1) is fs
    assert max(f.version for f in feature_sets() if f.name == "seed180") == fs.version


@pytest.mark.parametrize(("name", "version"), [("nope", None), ("seed180", 99), ("", 1)])
def test_unknown_feature_set(name: str, version: int | None) -> None:
    with pytest.raises(FeatureSetError) as info:
        get_feature_set(name, version)
    assert isinstance(info.value, KeyError)
    assert info.value.code == "unknown_feature_set"


# --- every feature set: shape, type, determinism, input checks -------------------------------


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
@pytest.mark.parametrize("kind", ["harmonic", "chirp", "noise"])
def test_shape_dtype_and_determinism(fs: FeatureSet, kind: str) -> None:
    y = synthetic(kind)
    a, b = fs(y, SR), fs.extract(y.copy(), SR)
    assert a.shape == (fs.dim,)
    assert a.dtype == np.float32
    assert np.isfinite(a).all()
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
def test_input_is_not_modified_and_float64_is_accepted(fs: FeatureSet) -> None:
    y = synthetic("harmonic")
    before = y.copy()
    x32 = fs(y, SR)
    assert np.array_equal(y, before)
    assert fs(y.astype(np.float64), SR).tobytes() == x32.tobytes()


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
@pytest.mark.parametrize("sr", [8_000, 22_050, 44_100, 48_000])
def test_wrong_sample_rate_is_rejected(fs: FeatureSet, sr: int) -> None:
    with pytest.raises(ValueError, match="resample"):
        fs(synthetic("noise"), sr)


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
def test_stereo_is_rejected(fs: FeatureSet) -> None:
    y = np.stack([synthetic("noise"), synthetic("chirp")])
    with pytest.raises(ValueError, match="mono"):
        fs(y, SR)


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
def test_too_short(fs: FeatureSet) -> None:
    n_min = int(np.ceil(fs.min_duration_s * SR))
    for n in (0, 1, n_min - 1):
        with pytest.raises(TooShortError):
            fs(np.full(n, 0.1, np.float32), SR)
    x = fs(synthetic("harmonic")[:n_min], SR)  # exactly the minimum works
    assert x.shape == (fs.dim,) and np.isfinite(x).all()


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
def test_non_finite_input(fs: FeatureSet) -> None:
    y = synthetic("noise")
    y[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        fs(y, SR)


@pytest.mark.parametrize("fs", feature_sets(), ids=lambda fs: fs.id)
def test_silence_gives_finite_features(fs: FeatureSet) -> None:
    x = fs(np.zeros(SR, np.float32), SR)
    assert np.isfinite(x).all()


# --- seed180 == the seed's numbers -----------------------------------------------------------


def assert_blocks_close(ours: np.ndarray, seed: np.ndarray, names: tuple[str, ...]) -> None:
    """Close relative to each block's scale (MFCC values cross zero; mel spans 1e-9..1e2)."""
    for name in names:
        sl = BLOCKS[name]
        scale = np.abs(seed[sl]).max()
        np.testing.assert_allclose(ours[sl], seed[sl], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize(("name", "y"), SIGNALS, ids=IDS)
def test_seed180_matches_seed(name: str, y: np.ndarray) -> None:
    seed, seed_tuning = seed_features(y, SR)
    ours = get_feature_set("seed180", 1)(y, SR)
    assert_blocks_close(ours, seed, ("mfcc", "mel"))
    # Chroma depends on a tuning estimate that is the argmax of a histogram: float32 rounding
    # of our single STFT can move a near-tie to another bin (about 3% of RAVDESS clips). So:
    # same tuning -> same chroma; and our tuning equals librosa's on the same spectrogram.
    spec = spectral.spectrogram_pass(y, SR)
    ours_tuning = spec.tuning
    assert ours_tuning == librosa.estimate_tuning(S=spec.mag, sr=SR)
    if ours_tuning == seed_tuning:
        assert_blocks_close(ours, seed, ("chroma",))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = librosa.feature.chroma_stft(S=spec.mag, sr=SR, tuning=ours_tuning).mean(axis=1)
        np.testing.assert_allclose(ours[BLOCKS["chroma"]], ref, rtol=1e-4, atol=1e-6)


def test_seed180_tuning_agrees_on_clear_pitch() -> None:
    y = synthetic("harmonic")
    assert seed_features(y, SR)[1] == spectral.spectrogram_pass(y, SR).tuning


def test_seed180_matches_seed_at_minimum_length_and_on_silence() -> None:
    fs = get_feature_set("seed180", 1)
    for y in (synthetic("chirp")[: int(fs.min_duration_s * SR)], np.zeros(SR, np.float32)):
        assert_blocks_close(fs(y, SR), seed_features(y, SR)[0], ("mfcc", "chroma", "mel"))


def test_stft_matches_librosa() -> None:
    y = synthetic("chirp", seconds=2.3)
    ours = spectral.stft_complex(y)
    ref = librosa.stft(y)
    assert ours.shape == ref.shape and ours.dtype == np.complex64
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("name", "y"), SIGNALS[:4], ids=IDS[:4])
def test_spectrogram_pass_matches_librosa(name: str, y: np.ndarray) -> None:
    spec = spectral.spectrogram_pass(y, SR)
    np.testing.assert_allclose(spec.mag, np.abs(librosa.stft(y)), rtol=1e-3, atol=1e-4)
    mel = librosa.feature.melspectrogram(y=y, sr=SR)
    np.testing.assert_allclose(spec.mel, mel, rtol=1e-3, atol=1e-6 * mel.max())


def test_tuning_histogram_matches_numpy() -> None:
    edges = np.linspace(-0.5, 0.5, 101)
    rng = np.random.default_rng(1)
    # random values, values exactly on every edge, and the closed right end
    values = np.concatenate([rng.uniform(-0.5, 0.5, 5000), edges, [0.5, 0.5]]).astype(np.float32)
    for part in (values, values[:7], values[5000:]):
        expected = np.argmax(np.histogram(part, edges)[0])
        assert spectral._histogram_argmax(part, edges) == expected


# --- emo ---------------------------------------------------------------------------------------


def tone(f0: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def test_emo_is_registered() -> None:
    latest, first = get_feature_set("emo"), get_feature_set("emo", 1)
    assert latest.id == "emo@2" and first.id == "emo@1"
    assert latest.dim == first.dim and latest.sample_rate == first.sample_rate == SR


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("gain", [0.05, 3.0])
def test_emo_ignores_recording_gain(gain: float, version: int) -> None:
    fs = get_feature_set("emo", version)
    for _, y in SIGNALS[:4]:
        # float32 rounding moves a few percentiles slightly; a level-dependent feature would
        # move by 20*log10(gain) dB
        np.testing.assert_allclose(fs(y * gain, SR), fs(y, SR), rtol=1e-2, atol=0.05)


@pytest.mark.parametrize("f0", [90.0, 150.0, 240.0, 420.0])
def test_emo_pitch_tracker_finds_f0(f0: float) -> None:
    from core.features import emo

    frames = emo._frame_descriptors(tone(f0))
    assert np.median(frames["f0"]) == pytest.approx(f0, rel=0.01)
    assert np.median(frames["voicing"]) > 0.9


def test_emo_noise_is_unvoiced() -> None:
    from core.features import emo

    frames = emo._frame_descriptors(synthetic("noise"))
    assert np.mean(frames["voicing"] >= emo.VOICING_THRESHOLD) < 0.1


def test_emo2_shrugs_off_low_frequency_noise() -> None:
    """emo@2's 80 Hz high-pass: brown (1/f^2) noise at 10 dB SNR moves emo@2 several times less
    than emo@1, whose statistics it drags far off (models then fall to chance)."""
    from core.degrade import add_noise

    _, y = SIGNALS[6]  # a real clip
    noisy = add_noise(y, 10.0, rng=np.random.default_rng(0), sr=SR, color="brown")
    shift = {}
    for version in (1, 2):
        fs = get_feature_set("emo", version)
        shift[version] = np.abs(fs(noisy, SR) - fs(y, SR)).mean()
    assert shift[2] < 0.3 * shift[1]


def test_emo2_refuses_non_finite_audio() -> None:
    y = synthetic("harmonic")
    y[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        get_feature_set("emo", 2)(y, SR)


def test_emo_higher_pitch_gives_higher_f0_statistics() -> None:
    fs = get_feature_set("emo", 1)
    low, high = fs(tone(120.0), SR), fs(tone(240.0), SR)
    assert not np.allclose(low, high)
