"""The distance scorer, the uncertain rule, and ood scores in saved models and predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.analyze import analyze_file
from core.artifacts import load_model, save_model
from core.datasets import read_dataset
from core.ood import OOD_ABOVE, DistanceScorer, is_uncertain
from core.predict import predict_file
from core.samples import demo_folder
from core.training import train_model

FIXTURES = demo_folder()
MODELS = Path(__file__).resolve().parents[2] / "models"


def _gaussian(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    mix = np.random.default_rng(0).normal(size=(20, 20))  # one distribution for every seed
    return np.random.default_rng(seed + 1).normal(size=(n, 20)) @ mix + shift


def test_training_like_rows_score_mid_and_far_rows_score_high():
    scorer = DistanceScorer(n_components=8).fit(_gaussian(3000))
    near = scorer.score(_gaussian(500, seed=1))
    far = scorer.score(_gaussian(500, shift=8.0, seed=2))
    assert 0.35 < np.median(near) < 0.65 and near.min() >= 0 and near.max() <= 1
    assert np.mean(far > OOD_ABOVE) > 0.95
    assert np.mean(near > OOD_ABOVE) < 0.05


def test_rows_of_a_far_class_are_typical():
    rng = np.random.default_rng(0)
    far = np.zeros(20)
    far[0] = 12.0  # one class lies far from the other, and from the mean of both
    X = np.vstack([rng.normal(size=(1000, 20)), rng.normal(size=(200, 20)) + far])
    y = np.array([0] * 1000 + [1] * 200)
    scorer = DistanceScorer(n_components=8).fit(X, y)
    new = scorer.score(rng.normal(size=(300, 20)) + far)
    assert 0.3 < np.median(new) < 0.7
    off = np.zeros((1, 20))
    off[0, 5] = 10.0
    assert scorer.score(off)[0] > OOD_ABOVE


def test_state_round_trip():
    scorer = DistanceScorer(n_components=5).fit(_gaussian(400), np.arange(400) % 3)
    again = DistanceScorer.from_state(scorer.state())
    X = _gaussian(50, shift=1.0, seed=3)
    np.testing.assert_array_equal(again.score(X), scorer.score(X))
    with pytest.raises(ValueError, match="lacks"):
        DistanceScorer.from_state({"mean": scorer.mean_})


@pytest.mark.parametrize(
    ("confidence", "ood", "flag"),
    [
        (0.9, 0.5, False),
        (0.4, 0.5, True),
        (0.9, 0.995, True),
        (None, 0.1, True),
        (0.9, None, False),
    ],
)
def test_is_uncertain(confidence, ood, flag):
    assert is_uncertain(confidence, ood, uncertain_below=0.5, ood_above=0.99) is flag


def test_no_thresholds_never_flag_an_answer():
    assert not is_uncertain(0.1, 1.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ds = read_dataset(FIXTURES)
    model = train_model(ds, name="tiny", version="t1", n_jobs=1, progress=False)
    return model, save_model(model, tmp_path_factory.mktemp("models"))


def test_saved_model_keeps_its_scorer_and_predictions_carry_ood(saved):
    model, path = saved
    loaded = load_model(path)
    assert loaded.ood_above == OOD_ABOVE == loaded.metadata["suggested_ood_above"]
    clip = sorted(FIXTURES.glob("*.flac"))[0]
    pred = predict_file(loaded, clip)
    assert 0.0 <= pred.ood <= 1.0 and pred.to_dict()["ood"] == pred.ood
    result = analyze_file(loaded, clip, segmentation="fixed", max_segment_s=1.0)
    assert all(0.0 <= s.ood <= 1.0 for s in result.segments)
    assert 0.0 <= result.ood <= 1.0


def test_a_model_without_scorer_reports_none():
    aer8 = load_model(MODELS / "aer8")
    assert aer8.ood is None and aer8.ood_above is None
    pred = predict_file(aer8, sorted(FIXTURES.glob("*.flac"))[0])
    assert pred.ok and pred.ood is None
