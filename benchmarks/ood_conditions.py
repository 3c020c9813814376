"""Confidence on audio conditions never seen in training, and what the ood score adds.

Speaker-independent folds exactly as ``aer evaluate`` builds them (``core.evaluation.splits``,
training rows and augmented copies stacked by ``core.evaluation.training_rows``, the preset
fitted by ``core.training.fit_pipeline``). In each fold a ``core.ood.DistanceScorer`` is fitted
on the fold's training rows, as ``aer train`` fits the shipped one on all rows. Each test
condition is marked ``held out`` when it is not among ``--augment`` (whole conditions left out of
training: a codec, a noise colour, a speed). Printed per condition, pooled over folds: UAR (mean
over folds), ECE (15 bins, top label), the share of results whose ``ood`` is above
``--ood-above``, the share that ``core.ood.is_uncertain`` flags with ``--uncertain-below``,
and the accuracy of the results it does not flag.

    python benchmarks/ood_conditions.py --data ../shared/data/ravdess --preset whisper-lr-temp \\
        --augment speed:0.9,speed:1.1,noise:15,pink:15,telephone,voip,gsm \\
        --test telephone,voip,gsm,amr:12.2,brown:20,speed:0.8,noise:20 --jobs 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from joblib import Parallel, delayed

from core.calibration import expected_calibration_error
from core.datasets import read_dataset
from core.evaluation import (
    _aligned,
    aligned_durations,
    score,
    splits,
    training_durations,
    training_rows,
)
from core.ood import OOD_ABOVE, DistanceScorer, is_uncertain
from core.routing import clf_predict_params
from core.training import featurize, fit_pipeline, needs_durations, resolve_feature_set


def _fold(k, train, test, table, extra, tests, preset):
    X, y, groups, sources = training_rows(table, extra, train)
    durations = training_durations(table, extra, train)
    pipeline, _ = fit_pipeline(preset, X, y, groups=groups, sources=sources, durations=durations)
    scorer = DistanceScorer().fit(X, y)
    out = {}
    for cond, (rows, has_row, seconds) in tests.items():
        idx = test[has_row[test]]
        params = clf_predict_params(pipeline, None if seconds is None else seconds[idx])
        out[cond] = (idx, pipeline.predict_proba(rows[idx], **params), scorer.score(rows[idx]))
    return out, list(pipeline.classes_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default="whisper-lr-temp")
    ap.add_argument("--features", default=None)
    ap.add_argument("--augment", default="")
    ap.add_argument("--test", default="")
    ap.add_argument("--fold-seed", type=int, default=None)
    ap.add_argument("--ood-above", type=float, default=OOD_ABOVE)
    ap.add_argument("--uncertain-below", type=float, default=0.0)
    ap.add_argument("--cache-dir", default="/tmp/aer-cache")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()
    augment = [s for s in args.augment.split(",") if s]
    conditions = [s for s in args.test.split(",") if s]
    ds = read_dataset(args.data)
    fs = resolve_feature_set(args.preset, args.features)
    timed = needs_durations(args.preset)
    kw = {"cache_dir": args.cache_dir, "n_jobs": args.jobs, "progress": False, "durations": timed}
    table = featurize(ds, fs, **kw)
    copies = [featurize(ds, fs, transform=s, **kw) for s in augment]
    extra = [(*_aligned(table, c), aligned_durations(table, c)) for c in copies]
    tests = {"clean": (table.X, np.ones(len(table.X), bool), table.durations)}
    for spec in conditions:
        other = featurize(ds, fs, transform=spec, **kw)
        rows, has_row, _ = _aligned(table, other)
        tests[spec] = (rows, has_row, aligned_durations(table, other))
    plan = list(splits(table, "speaker", fold_seed=args.fold_seed))
    results = Parallel(n_jobs=args.jobs)(
        delayed(_fold)(k, tr, te, table, extra, tests, args.preset)
        for k, (tr, te) in enumerate(plan)
    )
    classes = results[0][1]
    report = {}
    print(f"{args.preset} on {fs.id}, fold seed {args.fold_seed}, ood_above {args.ood_above}, "
          f"uncertain_below {args.uncertain_below}")  # fmt: skip
    print(f"{'condition':<22} {'':>8} {'UAR':>6} {'ECE':>6} {'ood>':>6} {'flag':>6} "
          f"{'acc kept':>8} {'acc flagged':>11} {'ood med':>7}")  # fmt: skip
    for cond in tests:
        uars, P, y, ood = [], [], [], []
        for fold, _ in results:
            idx, proba, o = fold[cond]
            truth = table.labels[idx].astype(str)
            uars.append(score(truth, np.asarray(classes)[proba.argmax(1)], tuple(classes))["uar"])
            P.append(proba)
            y.append(truth)
            ood.append(o)
        P, y, ood = np.vstack(P), np.concatenate(y), np.concatenate(ood)
        conf, right = P.max(1), np.asarray(classes)[P.argmax(1)] == y
        flag = np.array([
            is_uncertain(c, o, uncertain_below=args.uncertain_below, ood_above=args.ood_above)
            for c, o in zip(conf, ood, strict=True)
        ])  # fmt: skip
        row = {
            "held_out": cond != "clean" and cond not in augment,
            "uar": float(np.mean(uars)),
            "uar_std": float(np.std(uars)),
            "ece": float(expected_calibration_error(P, y, labels=classes)),
            "ood_share": float(np.mean(ood > args.ood_above)),
            "flagged": float(flag.mean()),
            "accuracy_kept": float(right[~flag].mean()) if (~flag).any() else None,
            "accuracy_flagged": float(right[flag].mean()) if flag.any() else None,
            "ood_median": float(np.median(ood)),
            "ood_share_above": {t: float(np.mean(ood > t)) for t in (0.9, 0.95, 0.98, 0.99)},
            "accuracy_ood_above": {
                t: float(right[ood > t].mean()) if (ood > t).any() else None
                for t in (0.9, 0.95, 0.98, 0.99)
            },
        }
        report[cond] = row
        kind = "held out" if row["held_out"] else ("" if cond == "clean" else "trained")
        kept = "-" if row["accuracy_kept"] is None else f"{row['accuracy_kept']:.3f}"
        flagged = "-" if row["accuracy_flagged"] is None else f"{row['accuracy_flagged']:.3f}"
        print(f"{cond:<22} {kind:>8} {row['uar']:6.3f} {row['ece']:6.3f} "
              f"{row['ood_share']:6.3f} {row['flagged']:6.3f} {kept:>8} {flagged:>11} "
              f"{row['ood_median']:7.3f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "conditions": report}, fh, indent=2)


if __name__ == "__main__":
    main()
