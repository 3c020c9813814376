"""Distillation: soft targets as weighted label copies, out-of-fold teachers, the router."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.calibration import TemperatureScaledClassifier
from core.datasets import read_dataset
from core.distillation import SoftTargetClassifier, soft_target_rows, teacher_probabilities
from core.features import get_feature_set
from core.routing import BandwidthRouter
from core.samples import demo_folder
from core.training import featurize, source_rows

FIXTURES = demo_folder()
CLASSES = np.array(["a", "b", "c"])


def test_weighted_label_copies_give_the_cross_entropy_against_the_mixture():
    rng = np.random.default_rng(0)
    y = rng.choice(CLASSES, size=50)
    teacher = rng.dirichlet(np.ones(3), size=50)
    X = np.arange(50)[:, None]
    X2, y2, w = soft_target_rows(X, y, teacher, 0.8, min_share=0.0)
    assert w.mean() == pytest.approx(1.0)
    q = rng.dirichlet(np.ones(3), size=50)  # any model's probabilities
    # the weighted mean loss over the copies, as a sample-weighted fit computes it
    copies = np.sum(w * -np.log(q[X2[:, 0], np.searchsorted(CLASSES, y2)])) / w.sum()
    target = 0.2 * teacher + 0.8 * (y[:, None] == CLASSES)
    assert copies == pytest.approx(np.mean(np.sum(-target * np.log(q), 1)))


def test_small_shares_are_dropped_and_a_label_share_of_one_gives_the_labels():
    X, y = np.array([[0], [1], [2]]), CLASSES
    teacher = np.array([[0.0, 0.9, 0.1], [0.02, 0.0, 0.98], [1 / 3, 1 / 3, 1 / 3]])
    X2, y2, w = soft_target_rows(X, y, teacher, 0.8)
    # row 0: a 0.8, b 0.18, c 0.02 (dropped); row 1: a 0.004 (dropped), b 0.8, c 0.196
    assert list(zip(X2[:, 0].tolist(), y2.tolist(), strict=True)) == [
        (0, "a"), (0, "b"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c"),
    ]  # fmt: skip
    np.testing.assert_allclose(w[:2] / w[:2].sum(), [0.8 / 0.98, 0.18 / 0.98])
    X1, y1, w1 = soft_target_rows(X, y, teacher, 1.0)
    assert X1[:, 0].tolist() == [0, 1, 2] and y1.tolist() == list(y) and w1.tolist() == [1] * 3
    with pytest.raises(ValueError, match="soft_targets must be"):
        soft_target_rows(X, y, teacher[:, :2], 0.8)


@pytest.fixture
def blobs():
    rng = np.random.default_rng(1)
    y = np.repeat(CLASSES, 40)
    X = rng.normal(size=(120, 4)) + (y[:, None] == CLASSES[:, None].T) @ np.eye(3, 4) * 1.5
    return X, y


def test_soft_targets_move_the_model_towards_the_teacher(blobs):
    X, y = blobs
    toward_c = np.tile([0.0, 0.0, 1.0], (len(y), 1))
    plain = SoftTargetClassifier(LogisticRegression()).fit(X, y)
    same = SoftTargetClassifier(LogisticRegression(), label_share=1.0).fit(X, y, toward_c)
    soft = SoftTargetClassifier(LogisticRegression(), label_share=0.5).fit(X, y, toward_c)
    np.testing.assert_allclose(same.predict_proba(X), plain.predict_proba(X))
    assert soft.predict_proba(X)[:, 2].mean() > plain.predict_proba(X)[:, 2].mean() + 0.1
    assert list(soft.classes_) == list(CLASSES)


def test_the_temperature_wrapper_passes_soft_targets_to_every_fit(blobs):
    X, y = blobs
    groups = np.arange(len(y)) % 6
    toward_c = np.tile([0.0, 0.0, 1.0], (len(y), 1))

    def fit(share, **soft):
        model = TemperatureScaledClassifier(
            SoftTargetClassifier(LogisticRegression(), label_share=share)
        )
        return model.fit(X, y, groups, **soft)

    plain, same, soft = fit(0.5), fit(1.0, soft_targets=toward_c), fit(0.5, soft_targets=toward_c)
    assert same.temperature_ == pytest.approx(plain.temperature_)
    # the inner folds' models learned from the teacher too: their probabilities, judged
    # against the labels, need another temperature
    assert soft.temperature_ != pytest.approx(plain.temperature_, rel=0.05)
    assert soft.estimator_.predict_proba(X)[:, 2].mean() > 0.4


def test_the_teacher_never_saw_the_speaker_of_the_clip_it_scores():
    rng = np.random.default_rng(2)
    n = 96
    X, y = rng.normal(size=(n, 3)), rng.choice(CLASSES, size=n)  # labels are noise
    speakers = np.arange(n) % 8
    everything = np.ones(n, dtype=bool)
    proba = teacher_probabilities(KNeighborsClassifier(1), X, y, speakers, everything, np.arange(n))
    # a 1-nearest-neighbour teacher that had seen a row would name its label every time
    assert np.mean(CLASSES[proba.argmax(axis=1)] == y) < 0.6
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        teacher_probabilities(KNeighborsClassifier(1), X, y, np.zeros(n), everything, np.arange(n))


def test_the_teacher_can_read_every_view_of_a_clip():
    rng = np.random.default_rng(4)
    n = 48
    X, y = rng.normal(size=(2 * n, 3)), np.tile(rng.choice(CLASSES, size=n), 2)
    speakers = np.tile(np.arange(n) % 6, 2)  # rows n.. are a copy of each clip
    fit = np.ones(2 * n, dtype=bool)
    on_clean = teacher_probabilities(KNeighborsClassifier(1), X, y, speakers, fit, np.arange(n))
    on_copy = teacher_probabilities(KNeighborsClassifier(1), X, y, speakers, fit, n + np.arange(n))
    view_of, clips = np.tile(np.arange(n), 2), np.arange(n)
    both = teacher_probabilities(KNeighborsClassifier(1), X, y, speakers, fit, clips, 4, view_of)
    np.testing.assert_allclose(both, (on_clean + on_copy) / 2)
    assert not np.allclose(both, on_clean)
    view_of[[0, n]] = -1  # clip 0 has no view left
    with pytest.raises(ValueError, match="at least one view"):
        teacher_probabilities(KNeighborsClassifier(1), X, y, speakers, fit, clips, 4, view_of)


def test_source_rows_find_each_copys_clean_recording():
    paths = ["a", "b", "c", "b", "c", "a", "x"]
    assert source_rows(paths, 3).tolist() == [0, 1, 2, 1, 2, 0, -1]


def _lr() -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])


def _kd_side(share=0.8) -> Pipeline:
    soft = SoftTargetClassifier(LogisticRegression(max_iter=500), label_share=share)
    return Pipeline([("scaler", StandardScaler()), ("clf", soft)])


def test_router_distils_each_copy_from_its_own_clean_clip(mixed_rows):
    X, y, speakers = mixed_rows
    n = len(X) // 2
    order = np.random.default_rng(3).permutation(n)  # copies in another order than the clips
    X, y, speakers = (np.concatenate([a[:n], a[n:][order]]) for a in (X, y, speakers))
    sources = np.concatenate([np.arange(n), order])
    router = BandwidthRouter(_lr(), _kd_side(), teacher=_lr())
    is_narrow = router.routes(X)
    soft = router._soft_targets(X, y, is_narrow, speakers, sources)
    clean = teacher_probabilities(_lr(), X, y, speakers, ~is_narrow, np.arange(n))
    np.testing.assert_allclose(soft, clean[order])
    sources[n] = -1  # a copy without its clean clip learns from its label
    soft = router._soft_targets(X, y, is_narrow, speakers, sources)
    assert soft[0].tolist() == (np.unique(y) == y[n]).astype(float).tolist()

    distilled = router.fit(X, y, speakers, sources)
    hard = BandwidthRouter(_lr(), _kd_side(1.0), teacher=_lr()).fit(X, y, speakers, sources)
    np.testing.assert_allclose(distilled.predict_proba(X[:n]), hard.predict_proba(X[:n]))
    assert not np.allclose(distilled.predict_proba(X[n:]), hard.predict_proba(X[n:]))
    with pytest.raises(ValueError, match="needs the sources"):
        router.fit(X, y, speakers)


def test_a_router_with_teacher_views_averages_the_wideband_copies_of_each_clip(mixed_rows):
    X, y, speakers = mixed_rows
    n = len(X) // 2
    wide_copy = X[:n] * (1 + np.random.default_rng(5).normal(scale=0.05, size=X[:n].shape))
    X, y, speakers = np.vstack([X, wide_copy]), np.tile(y[:n], 3), np.tile(speakers[:n], 3)
    sources = np.tile(np.arange(n), 3)
    router = BandwidthRouter(_lr(), _kd_side(), teacher=_lr(), teacher_views=True)
    is_narrow = router.routes(X)
    assert is_narrow.tolist() == [False] * n + [True] * n + [False] * n
    soft = router._soft_targets(X, y, is_narrow, speakers, sources)
    view_of = np.where(is_narrow, -1, sources)
    clips = np.arange(n)
    mean = teacher_probabilities(_lr(), X, y, speakers, ~is_narrow, clips, view_of=view_of)
    np.testing.assert_allclose(soft, mean)
    clean = teacher_probabilities(_lr(), X, y, speakers, ~is_narrow, clips)
    assert not np.allclose(soft, clean)


def test_router_distils_through_the_temperature_wrapper_as_the_preset_nests_it(mixed_rows):
    """emo-band-kd-mlp5-temp puts the soft-target vote inside a temperature wrapper, whose fit
    takes the soft targets in its **fit_params: they must reach the vote (once they did not,
    and the distilled preset trained on labels alone)."""
    X, y, speakers = mixed_rows
    n = len(X) // 2
    sources = np.tile(np.arange(n), 2)

    def router(share: float) -> BandwidthRouter:
        vote = SoftTargetClassifier(LogisticRegression(max_iter=500), label_share=share)
        side = Pipeline(
            [("scaler", StandardScaler()), ("clf", TemperatureScaledClassifier(vote, cv=2))]
        )
        return BandwidthRouter(_lr(), side, teacher=_lr())

    distilled = router(0.5).fit(X, y, speakers, sources)
    hard = router(1.0).fit(X, y, speakers, sources)
    assert not np.allclose(distilled.predict_proba(X[n:]), hard.predict_proba(X[n:]))
    plain_side = BandwidthRouter(_lr(), _lr(), teacher=_lr())
    with pytest.raises(TypeError, match="soft_targets"):  # a side that cannot learn from them
        plain_side.fit(X, y, speakers, sources)


@pytest.fixture(scope="module")
def mixed_rows(tmp_path_factory):
    """emo rows of the fixture clips, clean then telephone copies: (X, y, speakers)."""
    ds = read_dataset(FIXTURES)
    cache = tmp_path_factory.mktemp("cache")
    kw = {"cache_dir": cache, "n_jobs": 1, "progress": False}
    fs = get_feature_set("emo")
    clean, tel = featurize(ds, fs, **kw), featurize(ds, fs, transform="telephone", **kw)
    X = np.vstack([clean.X, tel.X])
    return X, np.concatenate([clean.labels, tel.labels]), np.tile(clean.speakers, 2)
