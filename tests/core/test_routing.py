"""The bandwidth router: telephone-band rows to one model, wideband rows to the other."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.artifacts import load_model, save_model
from core.audio import load
from core.datasets import read_dataset
from core.degrade import parse_degradation
from core.distillation import SoftTargetClassifier
from core.features import get_feature_set
from core.features.emo import narrowband_rows
from core.routing import BandwidthRouter
from core.samples import demo_folder
from core.training import featurize, train_model

FIXTURES = demo_folder()
WIDEBAND = ("clean", "noise:10", "pink:10", "brown:10", "speed:1.1", "gain:-20")
WIDEBAND += ("rate:11025", "rate:12000", "rate:14000")  # 11-16 kHz recordings
WIDEBAND += ("opus:12", "opus:24")  # Opus keeps the wideband at 12 kbit/s and more
NARROWBAND = (
    "telephone",
    "noise:20+telephone",
    "speed:0.9+telephone",
    "telephone+line:20",
    "gsm",
    "g721",
    "voip",  # 8 kHz with the whole 0-4 kHz band
    "rate:8000",
    "voip+line:20",
    "opus:8",  # at 8 kbit/s Opus itself codes narrowband (up to 4 kHz)
)


@pytest.fixture(scope="module")
def clips():
    ds = read_dataset(FIXTURES)
    return ds, [load(p) for p in ds.paths]


def emo_rows(signals, spec: str) -> np.ndarray:
    fs, degrade = get_feature_set("emo"), parse_degradation(spec)
    rng = np.random.default_rng(0)
    return np.array([fs(degrade(y, 16_000, rng), 16_000) for y in signals])


@pytest.mark.parametrize("spec", WIDEBAND + NARROWBAND)
def test_narrowband_rows_tells_telephone_audio_from_wideband(clips, spec):
    _, signals = clips
    expected = spec in NARROWBAND
    assert narrowband_rows(emo_rows(signals, spec)).tolist() == [expected] * len(signals)


def small_pipeline() -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])


@pytest.fixture(scope="module")
def mixed(clips):
    """emo rows of the fixture clips, clean then through the telephone channel, with labels."""
    ds, signals = clips
    X = np.vstack([emo_rows(signals, "clean"), emo_rows(signals, "telephone")])
    y = np.array(list(ds.labels) * 2)
    return X, y


def test_router_fits_and_asks_each_model_for_its_own_rows(mixed):
    X, y = mixed
    router = BandwidthRouter(small_pipeline(), small_pipeline()).fit(X, y)
    n = len(X) // 2
    assert router.wide_.named_steps["scaler"].n_samples_seen_ == n  # the clean rows only
    assert router.narrow_.named_steps["scaler"].n_samples_seen_ == n  # the telephone rows only
    assert router.routes(X).tolist() == [False] * n + [True] * n
    proba = router.predict_proba(X)
    np.testing.assert_array_equal(proba[:n], router.wide_.predict_proba(X[:n]))
    np.testing.assert_array_equal(proba[n:], router.narrow_.predict_proba(X[n:]))
    assert list(router.predict(X)) == list(router.classes_[proba.argmax(axis=1)])
    # the two models really differ: the same rows sent to the other one would score otherwise
    assert not np.allclose(router.narrow_.predict_proba(X[:n]), proba[:n])


def test_router_refuses_training_rows_of_one_bandwidth(mixed):
    X, y = mixed
    n = len(X) // 2
    router = BandwidthRouter(small_pipeline(), small_pipeline())
    with pytest.raises(ValueError, match="every training row is wideband.*--augment telephone"):
        router.fit(X[:n], y[:n])
    with pytest.raises(ValueError, match="every training row is narrowband"):
        router.fit(X[n:], y[n:])


@pytest.mark.parametrize("preset", ["emo-band-mlp5-temp", "emo-band-kd-mlp5-temp"])
def test_routed_preset_trains_saves_and_loads(tmp_path, preset):
    ds = read_dataset(FIXTURES)
    model = train_model(
        ds, name="routed", preset=preset, augment=["telephone"],
        cache_dir=tmp_path, n_jobs=1, progress=False,
    )  # fmt: skip
    router = model.pipeline.named_steps["clf"]
    assert isinstance(router, BandwidthRouter)
    for pipeline in router.fitted_pipelines():  # both sides calibrated, both slimmed
        calibrated = pipeline.named_steps["clf"]
        assert calibrated.temperature_ > 0
        vote = calibrated.estimator_
        distilled = isinstance(vote, SoftTargetClassifier)
        assert distilled == (preset == "emo-band-kd-mlp5-temp" and pipeline is router.narrow_)
        vote = vote.estimator_ if distilled else vote
        assert not any(hasattr(m, "_optimizer") for m in vote.estimators_)
    loaded = load_model(save_model(model, tmp_path / "out"))
    X = featurize(ds, loaded.feature_set, cache_dir=tmp_path, n_jobs=1, progress=False).X
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
