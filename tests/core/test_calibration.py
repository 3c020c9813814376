"""Calibration metrics, temperature scaling and abstention on synthetic data (fast)."""

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GroupKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.calibration import (
    DEFAULT_THRESHOLDS,
    SigmoidCalibratedClassifier,
    TemperatureScaledClassifier,
    TemperatureScaler,
    apply_temperature,
    calibration_metrics,
    coverage_curve,
    ece_noise_floor,
    expected_calibration_error,
    fit_temperature_grouped,
    reliability_curve,
    threshold_for_accuracy,
)

K = 4


def calibrated_sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose top label is right exactly as often as its confidence says."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(1 / K + 0.01, 1.0, n)
    top = rng.integers(0, K, n)
    P = np.repeat(((1 - conf) / (K - 1))[:, None], K, axis=1)
    P[np.arange(n), top] = conf
    wrong = (top + rng.integers(1, K, n)) % K
    y = np.where(rng.uniform(size=n) < conf, top, wrong)
    return P, y


def sharpen(P: np.ndarray, factor: float) -> np.ndarray:
    """Overconfident version: ``p ** factor`` renormalised (= temperature 1 / factor)."""
    return apply_temperature(P, 1.0 / factor)


@pytest.fixture(scope="module")
def grouped_data():
    """An overconfident-prone problem (correlated features for naive Bayes) with 12 groups."""
    X, y = make_classification(
        n_samples=1200, n_features=20, n_informative=6, n_redundant=10, n_classes=K,
        n_clusters_per_class=1, class_sep=0.8, flip_y=0.05, random_state=0,
    )  # fmt: skip
    groups = np.repeat(np.arange(12), 100)
    labels = np.array(["neutral", "calm", "happy", "sad"])[y]
    return X, labels, groups


def test_ece_of_calibrated_data_is_near_zero():
    P, y = calibrated_sample(40_000)
    assert expected_calibration_error(P, y) < 0.01


def test_ece_of_overconfident_data_is_large():
    P, y = calibrated_sample(40_000)
    assert expected_calibration_error(sharpen(P, 3.0), y) > 0.15


def test_ece_by_hand_and_with_labels():
    P = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 -> acc 0.5 (gap 0.4, 2 rows); 0.6 -> acc 1 (0.4); 0.7 -> acc 1 (0.3)
    expected = (2 * 0.4 + 0.4 + 0.3) / 4
    assert expected_calibration_error(P, y) == pytest.approx(expected)
    names = np.array(["a", "b", "a", "b"])
    assert expected_calibration_error(P, names, labels=("a", "b")) == pytest.approx(expected)
    curve = reliability_curve(P, y, n_bins=10)
    assert sum(curve["count"]) == 4 and curve["count"][8] == 2 and curve["accuracy"][8] == 0.5
    assert curve["accuracy"][0] is None and len(curve["bin_edges"]) == 11


def test_bad_inputs_are_refused():
    P = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="not one of"):
        expected_calibration_error(P, ["a", "b", "c"], labels=("a", "b"))
    with pytest.raises(ValueError, match="column indices"):
        expected_calibration_error(P, [0, 1, 2])
    with pytest.raises(ValueError, match="need probabilities"):
        expected_calibration_error(P, [0, 1])


def test_calibration_metrics():
    P, y = calibrated_sample(5_000)
    m = calibration_metrics(P, y)
    assert m["ece"] < 0.03 and m["mce"] >= m["ece"]
    assert m["accuracy"] == pytest.approx(m["mean_confidence"], abs=0.02)
    worse = calibration_metrics(sharpen(P, 3.0), y)
    assert worse["nll"] > m["nll"] and worse["brier"] > m["brier"]


def test_temperature_scaler_recovers_the_sharpening():
    P, y = calibrated_sample(20_000, seed=1)
    scaler = TemperatureScaler().fit(sharpen(P, 3.0), y)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.05)
    assert scaler.nll_after_ < scaler.nll_before_
    logits = np.log(sharpen(P, 3.0))
    assert TemperatureScaler(inputs="logits").fit(logits, y).temperature_ == pytest.approx(
        scaler.temperature_, rel=1e-3
    )
    with pytest.raises(NotFittedError):
        TemperatureScaler().transform(P)


def test_temperature_scaling_reduces_ece_on_held_out_data():
    P, y = calibrated_sample(20_000, seed=2)
    over = sharpen(P, 2.5)
    fit, held = slice(0, 10_000), slice(10_000, None)
    scaler = TemperatureScaler().fit(over[fit], y[fit])
    assert scaler.temperature_ > 1
    calibrated = scaler.transform(over[held])
    assert expected_calibration_error(over[held], y[held]) > 0.1
    assert expected_calibration_error(calibrated, y[held]) < 0.02
    np.testing.assert_array_equal(calibrated.argmax(1), over[held].argmax(1))
    np.testing.assert_allclose(calibrated.sum(1), 1.0)


def test_underconfident_inputs_get_temperature_below_one():
    P, y = calibrated_sample(10_000, seed=3)
    assert TemperatureScaler().fit(sharpen(P, 0.5), y).temperature_ < 1


def test_fit_temperature_grouped_sees_overconfidence(grouped_data):
    X, y, groups = grouped_data
    assert fit_temperature_grouped(GaussianNB(), X, y, groups, n_splits=4) > 1.5


def test_temperature_scaled_classifier(grouped_data):
    X, y, groups = grouped_data
    train, test = groups < 9, groups >= 9
    raw = GaussianNB().fit(X[train], y[train])
    clf = TemperatureScaledClassifier(GaussianNB(), cv=3).fit(X[train], y[train], groups[train])
    assert clf.temperature_ > 1 and list(clf.classes_) == list(raw.classes_)
    assert clf.n_features_in_ == 20
    np.testing.assert_array_equal(clf.predict(X[test]), raw.predict(X[test]))
    before = expected_calibration_error(raw.predict_proba(X[test]), y[test], labels=raw.classes_)
    after = expected_calibration_error(clf.predict_proba(X[test]), y[test], labels=clf.classes_)
    assert after < before / 2
    assert clf.score(X[test], y[test]) == raw.score(X[test], y[test])


def test_temperature_scaled_classifier_params(grouped_data):
    X, y, groups = grouped_data
    fixed = TemperatureScaledClassifier(GaussianNB(), temperature=2.0).fit(X, y)
    assert fixed.temperature_ == 2.0
    ungrouped = TemperatureScaledClassifier(GaussianNB(), cv=3).fit(X, y)  # StratifiedKFold
    assert ungrouped.temperature_ > 1
    assert clone(fixed).get_params()["temperature"] == 2.0
    with pytest.raises(NotFittedError):
        TemperatureScaledClassifier(GaussianNB()).predict_proba(X)


def test_groups_reach_the_classifier_inside_a_pipeline(grouped_data):
    X, y, groups = grouped_data
    pipe = Pipeline(
        [("scaler", StandardScaler()), ("clf", TemperatureScaledClassifier(GaussianNB()))]
    )
    pipe.fit(X, y, clf__groups=groups)
    direct = fit_temperature_grouped(GaussianNB(), StandardScaler().fit_transform(X), y, groups)
    assert pipe.named_steps["clf"].temperature_ == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("wrapper", [TemperatureScaledClassifier, SigmoidCalibratedClassifier])
def test_skops_round_trip_with_explicit_trusted_types(wrapper, grouped_data, tmp_path):
    X, y, groups = grouped_data
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", wrapper(GaussianNB()))])
    pipe.fit(X, y, clf__groups=groups)
    path = tmp_path / "model.skops"
    sio.dump(pipe, path)
    type_name = f"core.calibration.{wrapper.__name__}"
    assert sio.get_untrusted_types(file=path) == [type_name]
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)
    loaded = sio.load(path, trusted=[type_name])
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


def test_sigmoid_matches_sklearn_with_grouped_inner_folds(grouped_data):
    X, y, groups = grouped_data
    train, test = groups < 9, groups >= 9
    inner = GroupKFold(n_splits=3)
    ours = SigmoidCalibratedClassifier(GaussianNB(), cv=inner).fit(
        X[train], y[train], groups=groups[train]
    )
    theirs = CalibratedClassifierCV(
        GaussianNB(), method="sigmoid", ensemble=False,
        cv=list(inner.split(X[train], y[train], groups[train])),
    ).fit(X[train], y[train])  # fmt: skip
    np.testing.assert_allclose(
        ours.predict_proba(X[test]), theirs.predict_proba(X[test]), atol=1e-4
    )
    assert ours.slopes_.shape == ours.intercepts_.shape == (K,)
    raw = GaussianNB().fit(X[train], y[train]).predict_proba(X[test])
    after = expected_calibration_error(ours.predict_proba(X[test]), y[test], labels=ours.classes_)
    assert after < expected_calibration_error(raw, y[test], labels=ours.classes_) / 2


def test_ece_noise_floor():
    P, y = calibrated_sample(1_000, seed=7)
    small, large = ece_noise_floor(P), ece_noise_floor(calibrated_sample(16_000, seed=8)[0])
    assert small["p05"] < expected_calibration_error(P, y) < small["p95"]
    assert large["mean"] < small["mean"] / 2.5  # noise shrinks ~ 1 / sqrt(n)
    assert (
        expected_calibration_error(sharpen(P, 2.0), y) > 3 * ece_noise_floor(sharpen(P, 2.0))["p95"]
    )


def test_coverage_curve_trades_coverage_for_accuracy():
    P, y = calibrated_sample(40_000, seed=4)
    curve = coverage_curve(P, y)
    assert [r["threshold"] for r in curve] == list(DEFAULT_THRESHOLDS)
    coverage = np.array([r["coverage"] for r in curve])
    accuracy = np.array([r["accuracy"] for r in curve])
    assert coverage[0] == 1.0 and np.all(np.diff(coverage) <= 0)
    assert np.all(np.diff(accuracy) > -0.01) and accuracy[-1] > accuracy[0] + 0.3
    empty = coverage_curve(P, y, thresholds=[1.01])[0]
    assert empty["coverage"] == 0 and empty["accuracy"] is None


def test_threshold_for_accuracy_matches_brute_force():
    P, y = calibrated_sample(300, seed=5)
    P = np.round(P, 2)  # ties in confidence
    P /= P.sum(1, keepdims=True)
    target = 0.8
    found = threshold_for_accuracy(P, y, target)
    conf, correct = P.max(1), P.argmax(1) == y
    best = min(t for t in np.unique(conf) if correct[conf >= t].mean() >= target)
    assert found["threshold"] == best and found["accuracy"] >= target
    assert found["coverage"] == pytest.approx(np.mean(conf >= best))
    assert threshold_for_accuracy(P, y, 1.01) is None
