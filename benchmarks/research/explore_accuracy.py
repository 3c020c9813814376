"""Speaker-independent accuracy of feature sets x classifiers on RAVDESS (issue "Accuracy").

Finished (benchmarks/research/). Measured at commit 5cc4c97 (2026-11-24) on ``emo@1``:
``emo@1`` with a 5-MLP soft vote was the best pair, 0.607 UAR clean, 0.652 with four speed
copies (about 0.63 on reshuffled folds), an RBF SVM 0.621; no other feature set x classifier
pair did better (models/aer8.md, "What was tried"). ``--features emo`` now means the latest
``emo`` version: write ``--features emo@1`` to score what was measured.

Features of all clips are extracted once (``core.cache``, under /tmp/aer-cache, keyed by feature
set id and degradation), then each configuration is scored with GroupKFold(6) by actor:
accuracy and UAR (unweighted average recall = balanced accuracy), mean +- std over the folds,
for the 8-class task and the 4-class one (calm, happy, fearful, disgust). Hyperparameters are
either fixed or chosen by an inner GroupKFold on the training actors only (no test leakage).

    python benchmarks/research/explore_accuracy.py --features emo seed180 --classifiers svm logreg
    python benchmarks/research/explore_accuracy.py --features emo --classifiers svm --telephone

With ``--telephone`` each configuration is also tested on telephone-band copies of the test
clips (core.degrade.telephone), trained on clean clips only and on clean + telephone copies.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soxr  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.ensemble import VotingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.cache import extract_features  # noqa: E402
from core.datasets import read_ravdess  # noqa: E402
from core.features import get_feature_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess"
CACHE = Path("/tmp/aer-cache")
FOUR = ("calm", "happy", "fearful", "disgust")
RS = 0


def _svm(C: float = 4.0, probability: bool = False) -> SVC | CalibratedClassifierCV:
    svc = SVC(C=C, gamma="scale", class_weight="balanced", random_state=RS)
    # SVC(probability=True) is deprecated in scikit-learn 1.9: calibrate explicitly instead
    return CalibratedClassifierCV(svc, ensemble=False) if probability else svc


def _logreg(C: float = 0.1) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=3000, class_weight="balanced")


def _mlp(alpha: float = 1.0, hidden: tuple[int, ...] = (256,), seed: int = RS) -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=hidden, alpha=alpha, max_iter=600, early_stopping=False,
        random_state=seed,
    )  # fmt: skip


def _mlp_bag(n: int = 5, **kw) -> VotingClassifier:
    """Soft vote of ``n`` MLPs that differ only in their initialisation seed."""
    return VotingClassifier([(f"m{i}", _mlp(seed=i, **kw)) for i in range(n)], voting="soft")


# name -> (estimator factory, inner-CV grid or None for fixed hyperparameters)
CLASSIFIERS: dict[str, tuple[Callable[[], Pipeline], dict | None]] = {
    "svm": (lambda: make_pipeline(StandardScaler(), _svm()), {"svc__C": [1.0, 4.0, 16.0]}),
    "svm-cg": (
        lambda: make_pipeline(StandardScaler(), _svm()),
        {"svc__C": [2.0, 8.0, 32.0], "svc__gamma": ["scale", 0.002, 0.0005]},
    ),
    "svm-fixed": (lambda: make_pipeline(StandardScaler(), _svm(4.0)), None),
    "logreg": (
        lambda: make_pipeline(StandardScaler(), _logreg()),
        {"logisticregression__C": [0.01, 0.1, 1.0]},
    ),
    "mlp": (lambda: make_pipeline(StandardScaler(), _mlp()), None),
    "mlp-a3": (lambda: make_pipeline(StandardScaler(), _mlp(alpha=3.0)), None),
    "mlp-a03": (lambda: make_pipeline(StandardScaler(), _mlp(alpha=0.3)), None),
    "mlp-512": (lambda: make_pipeline(StandardScaler(), _mlp(hidden=(512,))), None),
    "mlp-2l": (lambda: make_pipeline(StandardScaler(), _mlp(hidden=(256, 128))), None),
    "mlp5": (lambda: make_pipeline(StandardScaler(), _mlp_bag(5)), None),
    "mlp5-a03": (lambda: make_pipeline(StandardScaler(), _mlp_bag(5, alpha=0.3)), None),
    "mlp-nested": (
        lambda: make_pipeline(StandardScaler(), _mlp()),
        {"mlpclassifier__alpha": [0.3, 1.0, 3.0]},
    ),
    "ens": (
        lambda: make_pipeline(
            StandardScaler(),
            VotingClassifier(
                [("svm", _svm(4.0, probability=True)), ("lr", _logreg(0.1)), ("mlp", _mlp())],
                voting="soft",
            ),
        ),
        None,
    ),
}


def fit_predict(
    name: str, X_tr: np.ndarray, y_tr: np.ndarray, g_tr: np.ndarray, tests: list[np.ndarray]
) -> tuple[list[np.ndarray], dict]:
    """Fit classifier ``name`` (inner grouped CV when it has a grid); predict each test matrix."""
    factory, grid = CLASSIFIERS[name]
    model = factory()
    chosen: dict = {}
    if grid:
        search = GridSearchCV(model, grid, scoring="balanced_accuracy", cv=GroupKFold(5), n_jobs=1)
        search.fit(X_tr, y_tr, groups=g_tr)
        model, chosen = search.best_estimator_, search.best_params_
    else:
        model = clone(model).fit(X_tr, y_tr)
    return [model.predict(X) for X in tests], chosen


def run_fold(name, X, y, groups, train, test, aug_train, tests):
    """One outer fold: returns {test condition: (acc, uar)} and the chosen hyperparameters.

    ``aug_train``: extra copies of X (same rows, degraded/perturbed) added for training rows;
    ``tests``: {condition: matrix aligned with X} scored on the test rows.
    """
    X_tr = np.vstack([X[train]] + [A[train] for A in aug_train])
    reps = 1 + len(aug_train)
    y_tr, g_tr = np.tile(y[train], reps), np.tile(groups[train], reps)
    conds = list(tests)
    preds, chosen = fit_predict(name, X_tr, y_tr, g_tr, [tests[c][test] for c in conds])
    scores = {
        c: (accuracy_score(y[test], p), balanced_accuracy_score(y[test], p))
        for c, p in zip(conds, preds, strict=True)
    }
    return scores, chosen


def evaluate(name, X, y, groups, aug_train, tests, n_jobs, split_seed=None):
    """Outer GroupKFold(6) by actor; one (scores, chosen) per fold.

    ``split_seed``: None = scikit-learn's default actor-to-fold assignment (the one used for all
    comparisons); an int = a shuffled assignment, to re-check a chosen configuration.
    """
    shuffle = {"shuffle": True, "random_state": split_seed} if split_seed is not None else {}
    folds = list(GroupKFold(6, **shuffle).split(X, y, groups))
    return Parallel(n_jobs=n_jobs)(
        delayed(run_fold)(name, X, y, groups, tr, te, aug_train, tests) for tr, te in folds
    )


def speed_perturb(y: np.ndarray, sr: int, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: tempo, pitch and formants all scaled by ``factor``."""
    del rng
    return soxr.resample(y, sr, sr / factor, quality="HQ").astype(np.float32)


# training-set augmentations: name -> [(transform, cache id for callables)]
AUGMENTATIONS: dict[str, list[tuple[str | Callable, str | None]]] = {
    "none": [],
    "telephone": [("telephone", None)],
    "speed": [(partial(speed_perturb, factor=f), f"speed:{f}") for f in (0.9, 1.1)],
}
AUGMENTATIONS["speed4"] = [
    (partial(speed_perturb, factor=f), f"speed:{f}") for f in (0.9, 0.95, 1.05, 1.1)
]
AUGMENTATIONS["speed+telephone"] = AUGMENTATIONS["speed"] + AUGMENTATIONS["telephone"]
AUGMENTATIONS["speed4+telephone"] = AUGMENTATIONS["speed4"] + AUGMENTATIONS["telephone"]


def features(fs, paths, n_jobs, transform=None, transform_id=None) -> np.ndarray:
    """Feature matrix of ``paths`` (cached), optionally of transformed copies."""
    ex = extract_features(
        paths, fs, cache_dir=CACHE, n_jobs=n_jobs, progress=False,
        transform=transform, transform_id=transform_id,
    )  # fmt: skip
    if not ex.ok.all():
        raise SystemExit(f"{fs.id} {transform_id or transform}: failed: {ex.failed[:3]}")
    return ex.X


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--features", nargs="+", default=["emo"])
    parser.add_argument("--classifiers", nargs="+", default=["svm", "logreg", "mlp"])
    parser.add_argument("--tasks", nargs="+", default=["8", "4"], choices=["8", "4"])
    parser.add_argument("--telephone", action="store_true", help="also test on telephone copies")
    parser.add_argument(
        "--augment", nargs="+", default=["none"], choices=sorted(AUGMENTATIONS),
        help="training-set augmentations to compare (each run separately)",
    )  # fmt: skip
    parser.add_argument(
        "--split-seed", type=int, default=None,
        help="shuffle actors into folds with this seed (default: unshuffled GroupKFold)",
    )  # fmt: skip
    parser.add_argument("--n-jobs", type=int, default=2, help="processes (at most 2 here)")
    args = parser.parse_args(argv)
    n_jobs = max(1, min(args.n_jobs, 2))

    data = read_ravdess(args.data)
    paths, labels, actors = data.paths, np.array(data.labels), np.array(data.speakers)
    print(f"{len(paths)} clips, {len(set(actors))} actors; GroupKFold(6) by actor\n")
    rows = [
        "| features | classifier | task | train | test | acc | UAR | chosen |",
        "|---" * 8 + "|",
    ]
    for fs_name in args.features:
        t0 = time.time()
        name, _, version = fs_name.partition("@")
        fs = get_feature_set(name, int(version) if version else None)
        X = features(fs, paths, n_jobs)
        tests = {"clean": X}
        if args.telephone:
            tests["telephone"] = features(fs, paths, n_jobs, "telephone")
        augs = {
            a: [features(fs, paths, n_jobs, t, tid) for t, tid in AUGMENTATIONS[a]]
            for a in args.augment
        }
        print(f"{fs.id}: features ready ({X.shape[1]} dims, {time.time() - t0:.0f} s)")
        for task in args.tasks:
            keep = np.ones(len(labels), bool) if task == "8" else np.isin(labels, FOUR)
            tests_k = {c: T[keep] for c, T in tests.items()}
            for clf in args.classifiers:
                for aug, mats in augs.items():
                    t0 = time.time()
                    res = evaluate(
                        clf, X[keep], labels[keep], actors[keep],
                        [M[keep] for M in mats], tests_k, n_jobs, args.split_seed,
                    )  # fmt: skip
                    chosen = sorted({str(c) for _, c in res if c})
                    for cond in tests_k:
                        acc = np.array([r[0][cond][0] for r in res])
                        uar = np.array([r[0][cond][1] for r in res])
                        row = (
                            f"| {fs.id} | {clf} | {task}-class | "
                            f"clean{'' if aug == 'none' else '+' + aug} | {cond} | "
                            f"{acc.mean():.3f} ± {acc.std():.3f} | "
                            f"{uar.mean():.3f} ± {uar.std():.3f} | {'; '.join(chosen)} |"
                        )
                        rows.append(row)
                        print(row, f"({time.time() - t0:.0f} s)", flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
