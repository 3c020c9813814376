"""Calibration of a preset on RAVDESS, speaker-independent (issue "Calibrated probabilities").

Outer GroupKFold by actor (the folds of ``core.evaluation.splits``, ``speaker`` protocol). In
each outer fold the preset is fitted on the training actors, and calibrated without seeing the
test actors:

* ``raw``: the preset as shipped today.
* ``temperature``: the preset's final step wrapped in ``core.calibration.
  TemperatureScaledClassifier``; its temperature comes from an inner GroupKFold over the
  training actors only (``pipeline.fit(X, y, clf__groups=actors)``).
* ``sigmoid``: the same, wrapped in ``core.calibration.SigmoidCalibratedClassifier`` (one Platt
  sigmoid per class).
* ``sklearn-sigmoid`` / ``sklearn-isotonic`` (optional): scikit-learn's
  ``CalibratedClassifierCV(ensemble=False)`` over the whole preset, same inner grouped splits.

Reported: ECE (15 equal-width bins, top label) of the pooled out-of-fold probabilities and per
fold, next to the ECE a perfectly calibrated model with the same confidences would show (its
sampling noise), NLL, Brier, accuracy and UAR, learned temperatures, and accuracy versus
coverage when predictions below a confidence threshold abstain. Writes ``report.json`` and
PNGs to ``--out``.

    python benchmarks/calibration_report.py                  # raw, temperature, sigmoid
    python benchmarks/calibration_report.py --methods raw temperature sigmoid sklearn-sigmoid \
        sklearn-isotonic --final
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.calibration import (  # noqa: E402
    SigmoidCalibratedClassifier,
    TemperatureScaledClassifier,
    calibration_metrics,
    coverage_curve,
    ece_noise_floor,
    reliability_curve,
    threshold_for_accuracy,
)
from core.datasets import read_ravdess  # noqa: E402
from core.evaluation import score, splits  # noqa: E402
from core.features import get_feature_set  # noqa: E402
from core.plots import plot_coverage, plot_reliability  # noqa: E402
from core.presets import RANDOM_STATE, build_pipeline  # noqa: E402
from core.training import featurize  # noqa: E402

METHODS = ("raw", "temperature", "sigmoid", "sklearn-sigmoid", "sklearn-isotonic")
WRAPPERS = {"temperature": TemperatureScaledClassifier, "sigmoid": SigmoidCalibratedClassifier}
TABLE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PLOT_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(100)) + (0.995, 0.999)


def wrapped_pipeline(preset: str, method: str, inner: int):
    """The preset with its final step wrapped in the core calibration wrapper of ``method``."""
    pipeline = build_pipeline(preset, RANDOM_STATE)
    name, clf = pipeline.steps[-1]
    pipeline.steps[-1] = (name, WRAPPERS[method](clf, cv=inner))
    return pipeline


def fit_predict(method: str, preset: str, inner: int, X, y, groups, X_test):
    """Fit ``method`` on (X, y) and return (probabilities of X_test, classes, temperature)."""
    T = None
    if method == "raw":
        model = build_pipeline(preset, RANDOM_STATE).fit(X, y)
    elif method in WRAPPERS:
        model = wrapped_pipeline(preset, method, inner).fit(X, y, clf__groups=groups)
        T = getattr(model.steps[-1][1], "temperature_", None)
    else:
        inner_splits = list(GroupKFold(n_splits=inner).split(X, y, groups))
        model = CalibratedClassifierCV(
            build_pipeline(preset, RANDOM_STATE),
            method=method.removeprefix("sklearn-"),
            cv=inner_splits,
            ensemble=False,
        ).fit(X, y)
    return model.predict_proba(X_test), model.classes_, T


def run(args) -> dict:
    fs = get_feature_set(args.features)
    table = featurize(
        read_ravdess(args.data), fs, cache_dir=args.cache, n_jobs=args.n_jobs, progress=False
    )
    labels = np.asarray(table.labels, dtype=str)
    classes = tuple(sorted(set(labels)))
    n = len(labels)
    oof = {m: np.zeros((n, len(classes))) for m in args.methods}
    folds: dict[str, list[dict]] = {m: [] for m in args.methods}
    for k, (train, test) in enumerate(splits(table, "speaker", folds=args.folds)):
        for m in args.methods:
            t0 = time.perf_counter()
            proba, cls, T = fit_predict(
                m, args.preset, args.inner, table.X[train], labels[train],
                table.speakers[train], table.X[test],
            )  # fmt: skip
            assert tuple(cls) == classes
            oof[m][test] = proba
            pred = np.asarray(classes)[proba.argmax(1)]
            s = score(labels[test], pred, classes)
            row = {
                "fold": k,
                "accuracy": s["accuracy"],
                "uar": s["uar"],
                "temperature": T,
                **calibration_metrics(proba, labels[test], labels=classes, n_bins=args.bins),
                "ece_floor": ece_noise_floor(proba, n_bins=args.bins)["mean"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            folds[m].append(row)
            print(
                f"fold {k} {m:11s} acc {row['accuracy']:.3f} ECE {row['ece']:.3f}"
                + (f" T {T:.2f}" if T else "")
                + f" ({row['seconds']} s)",
                flush=True,
            )
    out = {
        "preset": args.preset,
        "feature_set": fs.id,
        "n_files": n,
        "folds": args.folds,
        "inner_folds": args.inner,
        "n_bins": args.bins,
        "methods": {},
    }
    for m in args.methods:
        per_fold = folds[m]
        out["methods"][m] = {
            "pooled": calibration_metrics(oof[m], labels, labels=classes, n_bins=args.bins),
            "mean_over_folds": {
                key: round(float(np.mean([f[key] for f in per_fold])), 4)
                for key in ("accuracy", "uar", "ece", "ece_floor", "nll", "brier")
            },
            "ece_std_over_folds": round(float(np.std([f["ece"] for f in per_fold])), 4),
            # ECE a perfectly calibrated model with these confidences would show (noise)
            "ece_floor_pooled": ece_noise_floor(oof[m], n_bins=args.bins),
            "temperatures": [f["temperature"] for f in per_fold],
            "reliability": reliability_curve(oof[m], labels, labels=classes, n_bins=args.bins),
            "coverage": coverage_curve(oof[m], labels, labels=classes, thresholds=args.thresholds),
            "coverage_curve": coverage_curve(
                oof[m], labels, labels=classes, thresholds=PLOT_THRESHOLDS
            ),
            "for_accuracy": {
                str(t): threshold_for_accuracy(oof[m], labels, t, labels=classes)
                for t in (0.5, 0.6, 0.7)
            },
            "folds": per_fold,
        }
    if args.final:
        model = wrapped_pipeline(args.preset, "temperature", args.inner)
        model.fit(table.X, labels, clf__groups=table.speakers)
        out["final_temperature"] = model.steps[-1][1].temperature_
    return out


def print_report(out: dict) -> None:
    print(f"\n{out['preset']} on {out['feature_set']}, {out['n_files']} files, "
          f"GroupKFold({out['folds']}) by actor, inner GroupKFold({out['inner_folds']}), "
          f"ECE with {out['n_bins']} bins")  # fmt: skip
    print("\nECE floor = ECE a perfectly calibrated model with the same confidences would show")
    print("(pooled: mean [5th, 95th percentile] of 200 draws; per fold: mean over folds)\n")
    print("| method | ECE pooled | floor pooled | ECE per fold | floor per fold | NLL | Brier "
          "| accuracy | UAR | mean conf |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, r in out["methods"].items():
        p, f = r["pooled"], r["mean_over_folds"]
        fp = r["ece_floor_pooled"]
        print(f"| {m} | {p['ece']:.3f} | {fp['mean']:.3f} [{fp['p05']:.3f}, {fp['p95']:.3f}] "
              f"| {f['ece']:.3f} ± {r['ece_std_over_folds']:.3f} "
              f"| {f['ece_floor']:.3f} | "
              f"{p['nll']:.3f} | {p['brier']:.3f} | {f['accuracy']:.3f} | {f['uar']:.3f} | "
              f"{p['mean_confidence']:.3f} |")  # fmt: skip
    for m, r in out["methods"].items():
        if r["temperatures"][0] is not None:
            print(
                f"\n{m} temperatures per fold: " + ", ".join(f"{t:.2f}" for t in r["temperatures"])
            )
    if "final_temperature" in out:
        print(f"temperature learned on all actors: {out['final_temperature']:.2f}")
    for m, r in out["methods"].items():
        print(f"\naccuracy vs coverage, {m} (pooled out-of-fold)\n")
        print("| threshold | coverage | answered | accuracy |")
        print("| --- | --- | --- | --- |")
        for row in r["coverage"]:
            acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            print(
                f"| {row['threshold']:.1f} | {row['coverage']:.3f} | {row['n_answered']} | {acc} |"
            )
        for target, hit in r["for_accuracy"].items():
            what = (
                "unreachable"
                if hit is None
                else (f"threshold {hit['threshold']:.3f}, coverage {hit['coverage']:.3f}")
            )
            print(f"  accuracy >= {target}: {what}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/aer-cache"))
    ap.add_argument("--features", default="seed180")
    ap.add_argument("--preset", default="seed-300")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--inner", type=int, default=4)
    ap.add_argument("--bins", type=int, default=15)
    ap.add_argument(
        "--methods", nargs="+", choices=METHODS, default=["raw", "temperature", "sigmoid"]
    )
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(TABLE_THRESHOLDS))
    ap.add_argument("--final", action="store_true", help="also fit the temperature on all actors")
    ap.add_argument("--n-jobs", type=int, default=1, help="feature extraction processes")
    ap.add_argument("--out", type=Path, default=Path("/tmp/aer-calibration"))
    args = ap.parse_args(argv)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(out, indent=1) + "\n")
    methods = out["methods"]
    plot_reliability({m: r["reliability"] for m, r in methods.items()},
                     args.out / "reliability.png",
                     title=f"{out['preset']}, speaker-independent out-of-fold")  # fmt: skip
    plot_coverage({m: r["coverage_curve"] for m, r in methods.items()}, args.out / "coverage.png")
    print_report(out)
    print(f"\nwrote {args.out}/report.json, reliability.png, coverage.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
