"""Training and evaluation on the 16 fixture clips (fast; numbers are meaningless)."""

import numpy as np
import pytest

from core.datasets import read_dataset
from core.errors import DatasetError
from core.evaluation import evaluate, score, splits
from core.features import get_feature_set
from core.plots import plot_confusion, plot_loss_curves
from core.presets import PRESETS, build_pipeline
from core.routing import BandwidthRouter
from core.samples import demo_folder
from core.training import featurize, train_model

FIXTURES = demo_folder()
SEED4 = ("calm", "happy", "fearful", "disgust")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def dataset():
    return read_dataset(FIXTURES)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_fresh_pipelines(name):
    a, b = build_pipeline(name), build_pipeline(name)
    assert a is not b and a.steps[-1][0] == "clf"
    seeds = {v for k, v in a.get_params().items() if k.endswith("random_state")}
    assert 42 in seeds and build_pipeline(name, 7).get_params() != a.get_params()
    clf = a.named_steps["clf"]
    pipelines = [clf.wide, clf.narrow] if isinstance(clf, BandwidthRouter) else [a]
    assert all(("scaler" in p.named_steps) == (name != "seed-deep-unscaled") for p in pipelines)
    with pytest.raises(ValueError, match="unknown preset"):
        build_pipeline("nope")


def test_train_model_restricted_classes(dataset, cache):
    model = train_model(
        dataset, name="s4", preset="seed-deep", classes=SEED4, cache_dir=cache, n_jobs=1,
        progress=False,
    )  # fmt: skip
    assert model.labels == SEED4
    training = model.metadata["training"]
    assert training["n_files"] == 8 and training["class_counts"] == dict.fromkeys(SEED4, 2)
    assert model.metadata["preset"] == "seed-deep"
    X = featurize(dataset.restrict(SEED4), model.feature_set, cache_dir=cache, progress=False).X
    proba = model.predict_proba(X)
    assert proba.shape == (8, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_training_is_reproducible(dataset, cache):
    kw = {"name": "m", "cache_dir": cache, "n_jobs": 1, "progress": False}
    a, b = train_model(dataset, **kw), train_model(dataset, **kw)
    X = featurize(dataset, a.feature_set, cache_dir=cache, progress=False).X
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_speaker_evaluation_keeps_speakers_apart(dataset, cache, tmp_path):
    report = evaluate(dataset, folds=4, cache_dir=cache, n_jobs=1, progress=False)
    table = featurize(dataset, get_feature_set("seed180"), cache_dir=cache, progress=False)
    for train, test in splits(table, "speaker", folds=4):
        assert not set(table.speakers[train]) & set(table.speakers[test])
    s = report.summary()
    assert s["protocol"] == "speaker" and s["n_folds"] == 4 and s["n_files"] == 16
    assert s["classes"] == list(dataset.classes)
    for key in ("accuracy", "uar", "macro_f1"):
        assert 0.0 <= s[key] <= 1.0 and s[f"{key}_std"] >= 0.0
    assert set(s["per_class_recall"]) == set(dataset.classes)
    assert np.sum(s["confusion_matrix"]) == 16  # every clip tested exactly once
    assert all(len(f["test_speakers"]) == 2 for f in s["folds"])
    png = plot_confusion(report, tmp_path / "c.png"), plot_loss_curves(report, tmp_path / "l.png")
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in png)


def test_fold_seed_reassigns_speakers_and_keeps_them_apart(dataset, cache):
    table = featurize(dataset, get_feature_set("seed180"), cache_dir=cache, progress=False)

    def assignment(fold_seed):
        folds = list(splits(table, "speaker", folds=4, fold_seed=fold_seed))
        for train, test in folds:
            assert not set(table.speakers[train]) & set(table.speakers[test])
            assert len(train) + len(test) == len(table.labels)
        return [frozenset(table.speakers[test]) for _, test in folds]

    default = assignment(None)
    assert assignment(None) == default and assignment(3) == assignment(3)
    shuffled = [assignment(seed) for seed in range(1, 6)]
    assert any(set(a) != set(default) for a in shuffled)  # other speakers share a fold
    report = evaluate(dataset, folds=4, fold_seed=3, cache_dir=cache, n_jobs=1, progress=False)
    assert report.summary()["fold_seed"] == 3


def test_random_protocol_and_degraded_test_audio(dataset, cache):
    report = evaluate(
        dataset, classes=SEED4, protocol="random", repeats=2, degrade="telephone",
        augment=["noise:20"], cache_dir=cache, n_jobs=1, progress=False,
    )  # fmt: skip
    s = report.summary()
    assert (s["protocol"], s["n_folds"], s["degrade"], s["augment"]) == (
        "random", 2, "telephone", ["noise:20"]
    )  # fmt: skip
    assert all(f["n_test"] == 2 and f["n_train"] == 12 for f in s["folds"])  # 6 clean + 6 noisy


def test_speaker_protocol_needs_speakers(tmp_path, cache):
    clips = sorted(FIXTURES.glob("*.flac"))[:4]
    for label, pair in (("happy", clips[:2]), ("sad", clips[2:])):
        (tmp_path / label).mkdir()
        for clip in pair:
            (tmp_path / label / f"take{clip.name[-7:]}").write_bytes(clip.read_bytes())
    ds = read_dataset(tmp_path)  # label/file layout: no speakers
    with pytest.raises(DatasetError, match="speaker"):
        evaluate(ds, folds=2, cache_dir=cache, n_jobs=1, progress=False)


def test_score_handles_absent_classes():
    s = score(["a", "a", "b"], ["a", "b", "b"], ("a", "b", "c"))
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["per_class_recall"]["a"] == 0.5 and np.isnan(s["per_class_recall"]["c"])
    assert s["uar"] == pytest.approx(0.75)  # mean over the classes present
