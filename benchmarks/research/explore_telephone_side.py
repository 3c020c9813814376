"""Does a different telephone-side classifier close the telephone gap? (research script)

Finished (benchmarks/research/). Measured at commits e3f97be to e720446 (2026-12-02 to
2026-12-03), on ``aer8`` 2026.12.02-1's copies (``bw2-opus``): bigger MLPs, less weight decay,
boosted trees and votes left telephone UAR within the fold spread (best +0.4 points); the
distilled telephone model ``kd0.8`` gained +0.8 to +1.4 points on telephone audio in three runs
and was shipped in ``aer8`` 2026.12.03-1 (preset ``emo-band-kd-mlp5-temp``). ``kdv0.8`` was
not run to the end here; its preset was measured by retraining ``aer8`` 2026.12.03-2
(models/aer8.md, "What was tried"; benchmarks/research/README.md on OpenBLAS kernels).

The aer8 router (preset ``emo-band-mlp5-temp``) sends narrowband rows to its telephone model.
Every change of *training copies* tried so far left telephone UAR at 0.57-0.58 against 0.62 on
clean audio (models/aer8.md, "What was tried"). This script keeps the shipped copies
(``explore_bandwidth.RECIPES["bw2-opus"]``) and the wideband model fixed and swaps only the
telephone model's classifier, scored as ``explore_bandwidth.py`` scores (6 speaker folds,
``emo-mlp5`` per side: the temperature never moves the argmax):

    mlp5       the vote of emo-band-mlp5-temp: 5 MLPs (256,), alpha 1.0
    h512       5 MLPs (512,), alpha 1.0: more capacity for 1.6x the rows the wideband side has
    h256x2     5 MLPs (256, 256), alpha 1.0
    a0.3       5 MLPs (256,), alpha 0.3: less weight decay
    hgb        HistGradientBoostingClassifier (another model family, for the votes below)
    kd<L>      the mlp5 vote trained on soft targets (knowledge distillation with the clean
               clip as privileged information): L x the label + (1 - L) x what a wideband
               teacher says of the *clean* clip the copy came from. The teacher is an
               ``emo-mlp5`` wideband model from inner speaker folds, so it never saw the clip's
               speaker; the soft targets are trained as weighted label copies of each row
               (cross-entropy against the mixture), by ``core.distillation`` as the preset
               ``emo-band-kd-mlp5-temp`` (kd0.8 with temperature scaling) does. E.g. kd0.5
    kdv<L>     kd<L> with the teacher's mean over every wideband view of the clip (the clean
               clip and its speed, noise, rate and Opus copies) as the soft target, as
               ``emo-band-kdv-mlp5-temp`` does. E.g. kdv0.8
    A+B        soft vote (mean probability) of variants A and B, e.g. mlp5+hgb

Prints per-condition UAR for the test audio that the router sends (partly) to the telephone
model, for calls that lose packets (``loss:<percent>``) and for AMR-NB mobile calls (``amr``;
neither in training), the per-fold paired difference against ``mlp5``, and the loss (per-fold
clean UAR, from the wideband model, minus telephone UAR). Features come from the cache
(``--cache-dir``; missing ones are extracted).

    python benchmarks/research/explore_telephone_side.py --variants mlp5 h512 hgb mlp5+hgb --jobs 2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from explore_bandwidth import RECIPES  # noqa: E402

from core.datasets import read_dataset  # noqa: E402
from core.distillation import (  # noqa: E402
    mean_over_views,
    soft_target_rows,
    teacher_view_probabilities,
)
from core.evaluation import splits  # noqa: E402
from core.features import get_feature_set  # noqa: E402
from core.features.emo import narrowband_rows  # noqa: E402
from core.presets import build_pipeline  # noqa: E402
from core.training import featurize, fit_pipeline  # noqa: E402

TESTS = (
    "telephone", "gsm", "g721", "telephone+line:20", "noise:20+telephone", "voip",
    "rate:8000", "opus:8", "telephone+opus:16", "rate:8000+opus:12",
    # packet loss (never in training), concealed by repetition: core.degrade.packet_loss
    "voip+loss:5", "voip+loss:15", "opus:16+loss:5", "opus:16+loss:15",
    # AMR-NB, the 3G/4G mobile codec (never in training): its highest and lowest modes
    "amr:12.2", "amr:4.75", "noise:20+amr:12.2",
)  # fmt: skip


def _vote(**member_params) -> Pipeline:
    """The ``emo-mlp5`` pipeline with ``member_params`` set on each of its 5 MLPs."""
    pipeline = build_pipeline("emo-mlp5")
    members = pipeline.named_steps["clf"].estimators
    return pipeline.set_params(
        **{f"clf__{name}__{key}": v for name, _ in members for key, v in member_params.items()}
    )


BUILDERS = {
    "mlp5": lambda: build_pipeline("emo-mlp5"),
    "h512": lambda: _vote(hidden_layer_sizes=(512,)),
    "h256x2": lambda: _vote(hidden_layer_sizes=(256, 256)),
    "a0.3": lambda: _vote(alpha=0.3),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1,
                                                  random_state=42),
}  # fmt: skip
KD_MIN_SHARE = 0.05  # soft-target classes below this share are dropped (fewer label copies)
TEACHER_FOLDS = 4


def _is_kd(name: str) -> bool:
    return name.startswith("kd")


def _label_share(name: str) -> float:
    return float(name.removeprefix("kdv").removeprefix("kd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ravdess")
    parser.add_argument("--variants", nargs="+", default=["mlp5", "h512", "hgb", "mlp5+hgb"])
    parser.add_argument("--cache-dir", default="/tmp/aer-cache")
    parser.add_argument("--fold-seed", type=int)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    if args.variants[0] != "mlp5":
        args.variants.insert(0, "mlp5")
    bases = sorted({b for v in args.variants for b in v.split("+")})
    unknown = {b for b in bases if not _is_kd(b)} - set(BUILDERS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(BUILDERS)}")
    fs = get_feature_set("emo", 2)
    dataset = read_dataset(args.data)
    copies = RECIPES["bw2-opus"]
    tables = {None: featurize(dataset, fs, cache_dir=args.cache_dir, n_jobs=args.jobs)}
    for spec in sorted(set(copies) | set(TESTS)):
        tables[spec] = featurize(dataset, fs, cache_dir=args.cache_dir, n_jobs=args.jobs,
                                 progress=False, transform=spec)  # fmt: skip
    rows = {spec: t.X for spec, t in tables.items()}
    labels = tables[None].labels
    folds = list(splits(tables[None], "speaker", fold_seed=args.fold_seed))
    speakers = tables[None].speakers
    runs = Parallel(n_jobs=args.jobs)(
        delayed(score_fold)(rows, labels, speakers, copies, train, test, bases)
        for train, test in folds
    )
    print(f"{fs.id}, copies bw2-opus, 6 speaker folds (fold seed {args.fold_seed}); UAR mean "
          "over folds, d = per-fold paired difference against mlp5")  # fmt: skip
    for name, seconds in sorted({k: sum(r["seconds"][k] for r in runs) for k in bases}.items()):
        print(f"  fit time {name}: {seconds / len(runs):.0f} s per fold")
    uar = {v: {c: np.array([run_uar(r, v, c) for r in runs]) for c in TESTS}
           for v in args.variants}  # fmt: skip
    clean = np.array([r["clean"] for r in runs])
    print(f"clean (wideband model): {clean.mean():.3f}")
    if "teacher_uar" in runs[0]:
        for views, what in ((False, "the clean clip"), (True, "the mean over all views")):
            teacher = np.array([r["teacher_uar"][views] for r in runs])
            print(f"kd teacher ({what}), inner folds, on the clean training clips: "
                  f"UAR {teacher.mean():.3f}")  # fmt: skip
    print(f"{'test audio':<22}{'to tel.':>8}" + "".join(f"{v:>22}" for v in args.variants))
    for cond in TESTS:
        cells = []
        for v in args.variants:
            d = uar[v][cond] - uar["mlp5"][cond]
            cells.append(f"{uar[v][cond].mean():.3f}" + (f" d {d.mean():+.3f}±{d.std():.3f}"
                                                         if v != "mlp5" else ""))  # fmt: skip
        routed = narrowband_rows(rows[cond]).mean()
        print(f"{cond:<22}{routed:>8.2f}" + "".join(f"{c:>22}" for c in cells))
    loss = "".join(f"{(clean - uar[v]['telephone']).mean() * 100:>21.1f} " for v in args.variants)
    print(f"{'loss (points)':<30}" + loss)


def score_fold(
    rows: dict, labels: np.ndarray, speakers: np.ndarray, copies: list[str], train, test, bases
) -> dict:
    """Fit the wideband model and each telephone-side variant on one fold; test probabilities."""
    X = np.vstack([rows[None][train]] + [rows[spec][train] for spec in copies])
    y = np.tile(labels[train], 1 + len(copies)).astype(str)
    narrow = narrowband_rows(X)
    out: dict = {}
    if any(_is_kd(b) for b in bases):
        teachers, out["teacher_uar"] = teacher_probas(X, y, narrow, speakers[train], len(train))
    wide = fit_pipeline("emo-mlp5", X[~narrow], y[~narrow])[0]
    out.update(clean=balanced_accuracy_score(labels[test], wide.predict(rows[None][test])),
               seconds={}, routes={}, wide={}, narrow={})  # fmt: skip
    for cond in TESTS:
        out["routes"][cond] = narrowband_rows(rows[cond][test])
        out["wide"][cond] = wide.predict(rows[cond][test])
    for name in bases:
        model = BUILDERS["mlp5" if _is_kd(name) else name]()
        fit_X, fit_y, weights = X[narrow], y[narrow], {}
        if _is_kd(name):
            clip = np.flatnonzero(narrow) % len(train)  # rows are stacked copy by copy
            teacher = teachers[name.startswith("kdv")]
            fit_X, fit_y, w = soft_target_rows(
                fit_X, fit_y, teacher[clip], _label_share(name), KD_MIN_SHARE
            )
            weights = {"scaler__sample_weight": w, "clf__sample_weight": w}
        start = time.perf_counter()
        with threadpool_limits(limits=1):
            model.fit(fit_X, fit_y, **weights)
        out["seconds"][name] = time.perf_counter() - start
        classes = model.classes_
        out["narrow"][name] = {c: (classes, model.predict_proba(rows[c][test])) for c in TESTS}
    out["labels"] = labels[test]
    return out


def teacher_probas(
    X: np.ndarray, y: np.ndarray, narrow: np.ndarray, speakers: np.ndarray, n_clips: int
) -> tuple[dict, dict]:
    """Wideband teacher probabilities (n_clips, classes) for the clean training clips (the
    first ``n_clips`` rows of ``X``), each from a model of inner folds that never saw the
    clip's speaker, from one set of teacher fits: ``{False: of the clean clip, True: mean over
    the clip's wideband rows}``, and the UAR of each."""
    row_speaker = np.tile(speakers, len(X) // n_clips)
    clean = np.arange(n_clips)
    view_of = np.where(narrow, -1, np.arange(len(X)) % n_clips)
    view_of[clean] = clean  # a clean clip is its own view, as in teacher_probabilities
    teacher = build_pipeline("emo-mlp5")
    with threadpool_limits(limits=1):
        per_row = teacher_view_probabilities(
            teacher, X, y, row_speaker, ~narrow, clean, view_of, TEACHER_FOLDS
        )
    probas = {False: per_row[:n_clips], True: mean_over_views(per_row, view_of, n_clips)}
    classes = np.unique(y)
    uars = {views: balanced_accuracy_score(y[:n_clips], classes[p.argmax(axis=1)])
            for views, p in probas.items()}  # fmt: skip
    return probas, uars


def run_uar(run: dict, variant: str, cond: str) -> float:
    """UAR of one fold under ``cond`` with the telephone side ``variant`` (``A+B``: mean proba)."""
    parts = [run["narrow"][b][cond] for b in variant.split("+")]
    classes = parts[0][0]
    proba = np.mean([p for _, p in parts], axis=0)
    pred = np.where(run["routes"][cond], classes[proba.argmax(axis=1)], run["wide"][cond])
    return balanced_accuracy_score(run["labels"], pred)


if __name__ == "__main__":
    main()
