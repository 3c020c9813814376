"""Duration-dependent temperature (``T(d) = T0 * (1 + a / d)``): fit, clamp, pipeline, skops,
the cache's durations and the way models pass them."""

import numpy as np
import pytest
import skops.io as sio
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.cache import extract_features
from core.calibration import (
    DurationTemperatureClassifier,
    DurationTemperatureScaler,
    duration_temperatures,
    expected_calibration_error,
)
from core.features import get_feature_set
from core.model import EmotionModel
from core.presets import build_pipeline, get_preset
from core.routing import clf_predict_params
from core.samples import demo_folder
from core.training import needs_durations

CLIPS = sorted(demo_folder().glob("*.flac"))[:3]


def sample(n: int, seed: int = 0, t0: float = 1.0, a: float = 2.0):
    """Probabilities over-confident by ``t0 * (1 + a / d)``: labels drawn from the softened ones."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(1.0, 4.0, n)
    logits = rng.normal(scale=3.0, size=(n, 4))
    true = softmax(logits / (t0 * (1 + a / d))[:, None], axis=1)
    y = np.array([rng.choice(4, p=p) for p in true])
    return softmax(logits, axis=1), y, d


def test_scaler_recovers_a_temperature_that_grows_for_short_inputs():
    P, y, d = sample(6000)
    scaler = DurationTemperatureScaler(upper_quantile=1.0).fit(P, y, d)
    assert scaler.t0_ == pytest.approx(1.0, abs=0.25)
    assert scaler.a_ == pytest.approx(2.0, abs=0.6)
    assert scaler.nll_after_ < scaler.nll_before_
    P2, y2, d2 = sample(3000, seed=1)
    short = d2 < 1.5
    before = expected_calibration_error(P2[short], y2[short])
    after = expected_calibration_error(scaler.transform(P2, d2)[short], y2[short])
    assert after < before / 2


def test_no_duration_effect_gives_a_near_zero():
    P, y, d = sample(6000, a=0.0, t0=1.5)
    scaler = DurationTemperatureScaler(upper_quantile=1.0).fit(P, y, d)
    assert scaler.a_ < 0.3
    assert scaler.t0_ * (1 + scaler.a_ / 2.5) == pytest.approx(1.5, abs=0.2)


def test_temperatures_are_clamped_and_argmax_kept():
    assert duration_temperatures([0.5, 1.0, 2.0, 9.0], 1.0, 2.0, 1.0, 4.0) == pytest.approx(
        [3.0, 3.0, 2.0, 1.5]
    )
    P, y, d = sample(2000)
    scaler = DurationTemperatureScaler().fit(P, y, d)
    assert (scaler.min_duration_, scaler.max_duration_) == (d.min(), np.median(d))
    np.testing.assert_allclose(scaler.temperatures([d.max()]), scaler.temperatures([np.median(d)]))
    out = scaler.transform(P, d)
    np.testing.assert_array_equal(out.argmax(1), P.argmax(1))
    np.testing.assert_allclose(out.sum(1), 1.0)
    # no durations: every row at the median fitted duration
    np.testing.assert_allclose(
        scaler.transform(P[:5]), scaler.transform(P[:5], np.full(5, np.median(d)))
    )
    with pytest.raises(ValueError, match="durations"):
        scaler.transform(P[:5], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        DurationTemperatureScaler().fit(P[:3], y[:3], [1.0, 0.0, 2.0])


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    n = 480
    X = rng.normal(size=(n, 6))
    y = np.where(X[:, 0] + rng.normal(scale=1.0, size=n) > 0, "a", "b")
    groups = np.arange(n) % 8
    durations = rng.uniform(1.0, 4.0, n)
    pipe = Pipeline(
        [("scaler", StandardScaler()), ("clf", DurationTemperatureClassifier(GaussianNB()))]
    )
    pipe.fit(X, y, clf__groups=groups, clf__durations=durations)
    return pipe, X, y


def test_classifier_in_a_pipeline_takes_durations(fitted):
    pipe, X, _ = fitted
    clf = pipe.named_steps["clf"]
    assert not hasattr(clf, "_durations")
    short = pipe.predict_proba(X[:10], durations=np.full(10, 1.0))
    long = pipe.predict_proba(X[:10], durations=np.full(10, 4.0))
    np.testing.assert_array_equal(short.argmax(1), long.argmax(1))
    if clf.scaler_.a_ > 0:
        assert np.all(short.max(1) <= long.max(1) + 1e-12)
    np.testing.assert_array_equal(pipe.predict(X[:10]), clf.classes_[long.argmax(1)])
    assert clf_predict_params(pipe, [1.0] * 10)["durations"].tolist() == [1.0] * 10
    assert clf_predict_params(pipe, None) == {}
    with pytest.raises(ValueError, match="durations"):
        DurationTemperatureClassifier(GaussianNB()).fit(X, np.asarray(fitted[2]))


def test_skops_round_trip_needs_the_preset_trusted_types(fitted, tmp_path):
    pipe, X, _ = fitted
    path = tmp_path / "model.skops"
    sio.dump(pipe, path)
    trusted = list(get_preset("whisper-lr-dtemp").trusted_types)
    assert sorted(sio.get_untrusted_types(file=path)) == sorted(trusted)
    loaded = sio.load(path, trusted=trusted)
    d = np.linspace(1.0, 4.0, len(X))
    np.testing.assert_array_equal(
        loaded.predict_proba(X, durations=d), pipe.predict_proba(X, durations=d)
    )


def test_emotion_model_passes_durations_only_to_models_that_take_them(fitted):
    pipe, X, _ = fitted
    fs = get_feature_set("seed180")
    Xf = np.zeros((4, fs.dim), np.float32)
    Xf[:, :6] = X[:4]
    full = Pipeline(
        [("scaler", StandardScaler()), ("clf", DurationTemperatureClassifier(GaussianNB()))]
    )
    rows = np.zeros((len(X), fs.dim))
    rows[:, :6] = X
    full.fit(
        rows, fitted[2], clf__groups=np.arange(len(X)) % 8, clf__durations=np.linspace(1, 4, len(X))
    )
    model = EmotionModel(pipeline=full, labels=("a", "b"), feature_set=fs, name="t", version="1")
    np.testing.assert_allclose(
        model.predict_proba(Xf, durations=[1.0] * 4),
        full.predict_proba(Xf, durations=np.ones(4)),
    )
    plain = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression())]).fit(
        rows, fitted[2]
    )
    other = EmotionModel(pipeline=plain, labels=("a", "b"), feature_set=fs, name="p", version="1")
    np.testing.assert_allclose(
        other.predict_proba(Xf, durations=[1.0] * 4), plain.predict_proba(Xf)
    )
    assert needs_durations("whisper-lr-dtemp") and not needs_durations("whisper-lr-temp")
    assert isinstance(
        build_pipeline("whisper-lr-dtemp").named_steps["clf"], DurationTemperatureClassifier
    )


def test_cache_returns_and_stores_durations(tmp_path):
    fs = get_feature_set("seed180")
    plain = extract_features(CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert plain.durations is None
    timed = extract_features(
        CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False, durations=True
    )  # rows cached without durations: decoded again for the seconds only
    assert timed.n_computed == 0 and timed.n_cached == 3
    assert len(list(tmp_path.rglob("*.seconds"))) == 3
    again = extract_features(
        CLIPS, fs, cache_dir=tmp_path, n_jobs=1, progress=False, durations=True
    )
    np.testing.assert_array_equal(again.durations, timed.durations)
    np.testing.assert_array_equal(again.X, plain.X)
    cropped = extract_features(
        CLIPS, fs, n_jobs=1, progress=False, transform="crop:1.5", durations=True
    )
    assert np.all(cropped.durations <= 1.5 + 1e-9) and np.all(timed.durations > 1.5)
