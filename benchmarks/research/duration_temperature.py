"""Does a temperature that depends on the audio's duration calibrate short segments?

Issue 22 follow-up. ``whisper-lr-temp`` learns one temperature on speaker-grouped inner
out-of-fold probabilities of all training rows (whole clips and the ``crop:3`` copies alike);
held-out 1-2 s segments come out over-confident (ECE 0.11-0.21 against 0.04 on whole clips).
Here, per outer fold (the folds of ``aer evaluate``, training rows stacked as there), the same
inner out-of-fold probabilities are computed once and several maps are fitted on them, each
knowing every row's duration (the degraded signal's length in seconds, recomputed from the
cache's seeds; or the length of its speech, ``core.degrade.speech_span``):

* ``global``: one temperature (the shipped recipe);
* ``inv``: ``T(d) = T0 * (1 + a / d)``, a >= 0;
* ``pow``: ``T(d) = T0 * (d / 3) ** -b``;
* ``bucket``: one temperature per duration bucket (edges ``--edges``).

Each map is applied to the outer fold's held-out clips and cuts; ECE is pooled over folds.

    python benchmarks/research/duration_temperature.py --data ../shared/data/ravdess \\
        --augment speed:0.9,speed:1.1,noise:15,pink:15,telephone,voip,crop:3,crop:3+telephone \\
        --test crop:1,crop:2,crop:3,crop:3+telephone,telephone --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from sklearn.base import clone

from core.audio import load
from core.cache import degradation_seed, file_sha256
from core.calibration import EPS, TemperatureScaler, _out_of_fold, expected_calibration_error
from core.datasets import read_dataset
from core.degrade import parse_degradation, speech_span
from core.evaluation import _aligned, splits, training_rows
from core.presets import RANDOM_STATE, build_pipeline
from core.training import featurize, resolve_feature_set

LENGTH_KEEPING = ("noise", "pink", "telephone", "voip", "gsm")


def _durations_one(path: str, specs: list[str], sr: int) -> list[tuple[float, float]]:
    """(signal seconds, speech seconds) of the clip under each spec (None = clean)."""
    y = load(path, sr=sr, mono=True)
    digest = file_sha256(path)
    out = []
    for spec in specs:
        z = y
        if spec is not None and any(k in spec for k in ("crop", "speed")):
            rng = np.random.default_rng(degradation_seed(digest, spec))
            z = parse_degradation(spec)(y, sr, rng)
        a, b = speech_span(z, sr)
        out.append((z.size / sr, (b - a) / sr))
    return out


def durations(paths, specs, sr, jobs, cache: Path) -> np.ndarray:
    """[shape=(len(specs), n, 2)] seconds: signal, speech."""
    if cache.exists():
        return np.load(cache)
    rows = Parallel(n_jobs=jobs, batch_size=16)(
        delayed(_durations_one)(str(p), specs, sr) for p in paths
    )
    out = np.transpose(np.array(rows), (1, 0, 2))
    np.save(cache, out)
    return out


def _key(specs) -> str:
    return hashlib.sha256("|".join(map(str, specs)).encode()).hexdigest()[:12]


def _nll(logits, y, t):
    z = logits / t[:, None]
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_maps(logits, y, d, edges) -> dict:
    """Temperature functions d -> T, each fitted by NLL on out-of-fold logits."""
    maps = {}
    t0 = TemperatureScaler().fit(np.exp(logits), y).temperature_
    maps["global"] = lambda dd, t0=t0: np.full(len(dd), t0)

    def inv(w, dd):
        return np.exp(w[0]) * (1 + w[1] / dd)

    w = minimize(
        lambda w: _nll(logits, y, inv(w, d)),
        [np.log(t0), 0.1],
        bounds=[(np.log(0.01), np.log(100)), (0.0, 50.0)],
        method="L-BFGS-B",
    ).x
    maps["inv"] = lambda dd, w=w: inv(w, dd)

    def pw(w, dd):
        return np.exp(w[0]) * (dd / 3.0) ** (-w[1])

    w2 = minimize(
        lambda w: _nll(logits, y, pw(w, d)),
        [np.log(t0), 0.0],
        bounds=[(np.log(0.01), np.log(100)), (-5.0, 5.0)],
        method="L-BFGS-B",
    ).x
    maps["pow"] = lambda dd, w=w2: pw(w, dd)
    bucket = np.digitize(d, edges)
    ts = []
    for b in range(len(edges) + 1):
        m = bucket == b
        ts.append(
            TemperatureScaler().fit(np.exp(logits[m]), y[m]).temperature_ if m.sum() > 50 else t0
        )
    ts = np.array(ts)
    maps["bucket"] = lambda dd, ts=ts: ts[np.digitize(dd, edges)]
    params = {
        "global": [t0],
        "inv": list(np.round([np.exp(w[0]), w[1]], 3)),
        "pow": list(np.round([np.exp(w2[0]), w2[1]], 3)),
        "bucket": list(np.round(ts, 3)),
    }
    return maps, params


def _fold(train, test, table, extra, dtrain, tests, dtests, edges, which):
    X, y, groups, _ = training_rows(table, extra, train)
    # the duration of each stacked training row, in the same order
    d = [dtrain[0][train]]
    for (_, has_row, _), dd in zip(extra, dtrain[1:], strict=True):
        d.append(dd[train[has_row[train]]])
    d = np.concatenate(d)[:, which]
    pipe = build_pipeline("whisper-lr-temp", RANDOM_STATE)
    scaler, lr = clone(pipe.named_steps["scaler"]), clone(pipe.named_steps["clf"].estimator)
    Xs = scaler.fit_transform(X)
    oof, y_idx = _out_of_fold(lr, Xs, np.asarray(y, str), groups.astype(str), 4)
    logits = np.log(np.clip(oof, EPS, 1.0))
    maps, params = fit_maps(logits, y_idx, d, edges)
    lr.fit(Xs, np.asarray(y, str))
    out = {}
    for cond, (rows, has_row) in tests.items():
        idx = test[has_row[test]]
        lp = np.log(np.clip(lr.predict_proba(scaler.transform(rows[idx])), EPS, 1.0))
        dd = dtests[cond][idx, which]
        out[cond] = (idx, {k: softmax(lp / f(dd)[:, None], axis=1) for k, f in maps.items()}, dd)
    return out, list(lr.classes_), params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--augment", default="")
    ap.add_argument("--test", default="")
    ap.add_argument("--edges", default="1.5,2.0,2.5,3.0")
    ap.add_argument("--duration", choices=("signal", "speech"), default="signal")
    ap.add_argument("--cache-dir", default="/tmp/aer-cache")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    augment = [s for s in args.augment.split(",") if s]
    conditions = [s for s in args.test.split(",") if s]
    edges = np.array([float(e) for e in args.edges.split(",")])
    which = 0 if args.duration == "signal" else 1
    ds = read_dataset(args.data)
    fs = resolve_feature_set("whisper-lr-temp", None)
    kw = {"cache_dir": args.cache_dir, "n_jobs": args.jobs, "progress": False}
    table = featurize(ds, fs, **kw)
    extra = [_aligned(table, featurize(ds, fs, transform=s, **kw)) for s in augment]
    tests = {"clean": (table.X, np.ones(len(table.X), bool))}
    for spec in conditions:
        rows, has_row, _ = _aligned(table, featurize(ds, fs, transform=spec, **kw))
        tests[spec] = (rows, has_row)
    specs = [None, *augment, *[c for c in conditions if c not in augment]]
    dur = durations(
        table.paths,
        specs,
        fs.sample_rate,
        args.jobs,
        Path(args.cache_dir) / f"durations-{_key(specs)}.npy",
    )
    by_spec = dict(zip(map(str, specs), dur, strict=True))
    dtrain = [by_spec["None"], *[by_spec[s] for s in augment]]
    dtests = {c: by_spec["None" if c == "clean" else c] for c in tests}
    for name, dd in dtests.items():
        print(
            f"{name:<20} {args.duration} seconds: median {np.median(dd[:, which]):.2f}, "
            f"5-95 % {np.percentile(dd[:, which], 5):.2f}-{np.percentile(dd[:, which], 95):.2f}"
        )
    plan = list(splits(table, "speaker"))
    results = Parallel(n_jobs=args.jobs)(
        delayed(_fold)(tr, te, table, extra, dtrain, tests, dtests, edges, which) for tr, te in plan
    )
    classes = np.asarray(results[0][1])
    for _, _, params in results:
        print("fold maps:", params)
    names = list(results[0][0]["clean"][1])
    print(f"{'condition':<20} " + " ".join(f"{n:>8}" for n in names) + "   (ECE; mean conf)")
    for cond in tests:
        y = np.concatenate([table.labels[r[0][cond][0]].astype(str) for r in results])
        eces, confs = [], []
        for n in names:
            P = np.vstack([r[0][cond][1][n] for r in results])
            eces.append(expected_calibration_error(P, y, labels=classes))
            confs.append(P.max(1).mean())
        acc = np.mean(classes[P.argmax(1)] == y)
        print(
            f"{cond:<20} "
            + " ".join(f"{e:8.3f}" for e in eces)
            + f"   conf {' '.join(f'{c:.3f}' for c in confs)} acc {acc:.3f}"
        )


if __name__ == "__main__":
    main()
