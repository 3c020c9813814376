"""Calibrated presets, out-of-fold calibration outputs and multi-condition evaluation."""

import numpy as np
import pytest

from core.artifacts import load_model, save_model
from core.calibration import SigmoidCalibratedClassifier
from core.datasets import read_dataset
from core.errors import FeatureSetError
from core.evaluation import COVERAGE_THRESHOLDS, evaluate, training_rows
from core.model import EmotionModel
from core.presets import get_preset
from core.samples import demo_folder
from core.training import FeatureTable, fit_pipeline, resolve_feature_set, train_model

FIXTURES = demo_folder()


def blobs(n_speakers: int, per_class: int = 3, classes=("a", "b", "c"), dim: int = 6):
    """Separable synthetic features: rows, labels and a speaker for every row."""
    rng = np.random.default_rng(0)
    X, y, g = [], [], []
    for s in range(n_speakers):
        for k, c in enumerate(classes):
            X.append(rng.normal(loc=2.0 * k, size=(per_class, dim)))
            y += [c] * per_class
            g += [f"spk{s}"] * per_class
    return np.vstack(X).astype(np.float32), np.array(y), np.array(g)


def test_feature_set_names_take_an_optional_version():
    assert resolve_feature_set("emo-mlp5-temp", None).id == "emo@2"  # the latest
    assert resolve_feature_set("emo-mlp5-temp", "emo@1").id == "emo@1"
    assert resolve_feature_set("seed-300", "seed180").id == "seed180@1"
    for bad in ("emo@x", "emo@9", "nope"):
        with pytest.raises(FeatureSetError):
            resolve_feature_set("emo-mlp5-temp", bad)


def test_emo_presets_default_to_the_emo_feature_set():
    assert get_preset("emo-mlp5-cal").feature_set == "emo"
    assert resolve_feature_set("emo-mlp5", None).name == "emo"
    assert resolve_feature_set("seed-300", None).id == "seed180@1"
    assert resolve_feature_set("emo-mlp5", "seed180").name == "seed180"


@pytest.fixture(scope="module")
def calibrated():
    """emo-mlp5-cal fitted once on emo-sized synthetic rows: (pipeline, info, X, y)."""
    X, y, g = blobs(8, dim=249)
    pipeline, info = fit_pipeline("emo-mlp5-cal", X, y, groups=g)
    return pipeline, info, X, y


def test_calibrated_preset_uses_speaker_groups_for_its_inner_folds(calibrated):
    pipeline, info, X, y = calibrated
    clf = pipeline.named_steps["clf"]
    assert isinstance(clf, SigmoidCalibratedClassifier) and clf.slopes_.shape == (3,)
    assert len(clf.estimator_.estimators_) == 5 and info["n_iter"] > 0
    P = pipeline.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert np.mean(pipeline.predict(X) == y) > 0.9
    # the groups reach GroupKFold(4): two speakers cannot make four inner folds
    X2, y2, g2 = blobs(2, per_class=6)
    with pytest.raises(ValueError, match="groups"):
        fit_pipeline("emo-mlp5-cal", X2, y2, groups=g2)


def test_calibrated_model_round_trips_through_skops(calibrated, tmp_path):
    pipeline, _, X, _ = calibrated
    fs = resolve_feature_set("emo-mlp5-cal", None)
    model = EmotionModel(
        pipeline=pipeline, labels=("c", "b", "a"), feature_set=fs, name="cal", version="1"
    )
    loaded = load_model(save_model(model, tmp_path))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_evaluation_reports_out_of_fold_calibration_and_conditions(tmp_path):
    dataset = read_dataset(FIXTURES)
    report = evaluate(
        dataset, preset="seed-300", folds=4, also_test=["telephone", "gain:-12"],
        cache_dir=tmp_path, n_jobs=1, progress=False,
    )  # fmt: skip
    P, y = report.pooled()
    assert P.shape == (16, 8) and sorted(y) == sorted(report.labels)  # each clip once
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)  # float32 pipeline
    s = report.summary()
    assert 0.0 <= s["ece"] <= 1.0 and s["ece_noise_floor"]["mean"] > 0.0
    assert sum(s["reliability_curve"]["count"]) == 16
    assert [r["threshold"] for r in s["coverage_curve"]] == list(COVERAGE_THRESHOLDS)
    assert "ece_uncalibrated" not in s  # seed-300 has no calibrator
    assert set(s["conditions"]) == {"telephone", "gain:-12"}
    for cond in s["conditions"].values():
        assert 0.0 <= cond["uar"] <= 1.0 and "ece" in cond
    assert sum(f.n_test for f in report.conditions["telephone"]) == 16
    threshold = report.suggested_uncertain_below()
    assert threshold is None or 0.0 <= threshold <= 1.0


def test_trained_model_keeps_augmented_copies_with_their_speaker(tmp_path):
    dataset = read_dataset(FIXTURES).restrict(["calm", "happy"])
    model = train_model(
        dataset, name="m", augment=["speed:1.1"], cache_dir=tmp_path, n_jobs=1, progress=False
    )
    assert model.metadata["training"]["n_rows"] == 2 * model.metadata["training"]["n_files"]
    assert model.metadata["training"]["augment"] == ["speed:1.1"]
    mlp = model.pipeline.named_steps["clf"]
    assert not hasattr(mlp, "_optimizer") and not hasattr(mlp, "_best_coefs")  # slimmed


def test_fold_training_rows_point_each_copy_at_its_clean_row():
    n = 6
    table = FeatureTable(
        X=np.arange(n, dtype=float)[:, None], labels=np.array(list("aabbcc")),
        speakers=np.array(list("xyxyxy")), paths=[f"{i}.wav" for i in range(n)], failed=[],
    )  # fmt: skip
    copy = (table.X + 100, np.array([True, True, False, True, True, True]), [])  # clip 2 failed
    train = np.array([1, 2, 4, 5])
    X, y, groups, sources = training_rows(table, [copy, copy], train)
    assert sources.tolist() == [0, 1, 2, 3] + [0, 2, 3] * 2
    np.testing.assert_array_equal(X[4:, 0] - 100, X[sources[4:], 0])  # the copy of its clip
    assert y.tolist() == list("abcc") + list("acc") * 2 and groups[4:].tolist() == list("yxy") * 2
