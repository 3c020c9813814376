"""Cheap changes to the aer8 recipe: heterogeneous soft votes and telephone-side augmentation.

Finished (benchmarks/research/). Measured at commits ebe2836 and 18246b7 (2026-11-25), on the
recipe of ``aer8`` 2026.11.24-2 (``emo@1``, no router), which was the default then; ``aer8`` has
since moved to ``emo@2`` and a bandwidth router, so "the shipped aer8" below means that recipe.
Conclusion: an RBF SVM in the vote gained +0.7 +- 1.5 UAR points on the default folds (+0.2 with
its share chosen by inner CV) for 7328 support vectors, ~18 MB and 1.7 ms more CPU per clip: not
shipped; every telephone-side copy variant bought about a point of telephone UAR for one to two
points of clean UAR (models/aer8.md, "What was tried": "Mixed votes", "Telephone-side copies").

Research script, not shipped code. Baseline = ``aer8`` 2026.11.24-2's recipe: emo@1 features,
StandardScaler + soft vote of 5 MLPClassifier(256, alpha=1.0, max_iter=600, random_state=42..46)
(the vote inside preset ``emo-mlp5-temp``; temperature scaling never changes the argmax, so UAR is
the same with or without it), trained on clean + speed:0.9/0.95/1.05/1.1 + telephone + noise:15
+ noise:30 copies of the training actors' clips (augmented rows keep their clip's actor and are
stacked in the order ``core.evaluation`` uses, so the default-fold baseline reproduces
``aer evaluate`` exactly).

Protocol: outer GroupKFold(6) by actor. ``--splits default`` is scikit-learn's unshuffled
assignment (the one in models/aer8.md); ``--splits 1 2`` are GroupKFold(6, shuffle=True,
random_state=1 / 2), i.e. a permuted actor-to-fold assignment, used to re-check anything that
wins on the default folds. Every recipe of one run is scored on the same folds, with the
baseline in the same table; "d" columns are paired per-fold differences against the baseline.

Members are fitted once per (task, training set, split, fold) and their test probabilities are
kept under /tmp/aer-explore/probs, so votes are recombined without refitting. Members:

    mlp0..mlp4  MLPClassifier(256, alpha=1.0, max_iter=600, random_state=42+i)
    svm         CalibratedClassifierCV(SVC(C=4.0, gamma="scale", class_weight="balanced"),
                method="sigmoid", cv=GroupKFold(4) by actor on the training rows, ensemble=False)
    lr          LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000) (multinomial)

all after one StandardScaler fitted on the fold's training rows. Vote weights are fixed in
advance (see ``VOTES``): ``a+b`` gives each model family an equal share, ``/n`` each member an
equal share. ``mlp5+svm@cv`` picks the SVM share from {0, 1/6, 1/3, 1/2, 2/3} by clean UAR on
inner GroupKFold(4) out-of-fold predictions of the training actors only (never the test fold).

Training sets (``--trainsets``): ``ship`` (the 7 shipped copies), ``ship+telspeed`` (+ a
telephone copy of each speed copy: speed:F+telephone), ``ship+noisetel`` (+ noise:15+telephone,
noise:30+telephone), ``ship+alaw`` (+ a G.711 A-law telephone copy), ``ship-alaw`` (telephone
copy made with A-law instead of mu-law), ``ship+bands`` (+ mu-law telephone copies band-limited to
200-3600 Hz and 400-3100 Hz), ``aer4`` (speed4 + telephone: the shipped 4-class recipe).
Tests: clean, telephone (core.degrade.telephone: 300-3400 Hz, mu-law) and noise:20.

Commands behind the reported numbers (run from the repository root; one process, one BLAS
thread; features come from /tmp/aer-cache). They were run with ``PYTHONPATH`` pointing at a
``git archive HEAD core`` snapshot while core/features was being edited, so that new degraded
copies were extracted with the same emo@1 code as the cached ones:

    python benchmarks/research/explore_ensemble.py --trainsets ship --splits default \
        --votes mlp5 svm lr mlp5+svm mlp5+lr mlp5+svm+lr mlp5+svm/6 mlp5+svm+lr/7
    python benchmarks/research/explore_ensemble.py --trainsets ship --splits default 1 2 \
        --votes mlp5 mlp5+svm mlp5+svm+lr mlp5+svm/6 mlp5+svm+lr/7
    python benchmarks/research/explore_ensemble.py --trainsets ship --splits default \
        --votes mlp5 mlp5+svm mlp5+svm@cv
    python benchmarks/research/explore_ensemble.py --splits default --votes mlp5 \
        --trainsets ship ship+telspeed ship+noisetel ship+alaw ship-alaw ship+bands
    python benchmarks/research/explore_ensemble.py --task 4 --trainsets aer4 ship \
        --splits default 1 2 --votes mlp5 mlp5+svm mlp5+svm+lr/7
    python benchmarks/research/explore_ensemble.py --svm-cost    # SVM size and per-clip cost

Fitted members' probabilities and fit times are reused from /tmp/aer-explore/probs on a rerun
(delete that folder to refit); "fit s" sums the outer-fold member fits of a vote (one process,
one thread; no temperature step, which would refit the vote 4 more times per fold).
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
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import skops.io as sio  # noqa: E402
import soxr  # noqa: E402
from scipy.signal import butter, sosfiltfilt  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
try:  # the installed package, or a snapshot named by PYTHONPATH
    import core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))
from core.cache import extract_features  # noqa: E402
from core.datasets import read_ravdess  # noqa: E402
from core.degrade import PHONE_BAND_HZ, PHONE_SR, mulaw_decode, mulaw_encode  # noqa: E402
from core.features import get_feature_set  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess"
CACHE = Path("/tmp/aer-cache")
SCRATCH = Path("/tmp/aer-explore")
FOUR = ("calm", "happy", "fearful", "disgust")
RS = 42  # core.presets.RANDOM_STATE: the MLPs use 42..46 as in emo-mlp5-temp
N_MLP = 5
SPEEDS = ("speed:0.9", "speed:0.95", "speed:1.05", "speed:1.1")
SHIP = [*SPEEDS, "telephone", "noise:15", "noise:30"]
TESTS = ("clean", "telephone", "noise:20")
A_LAW = 87.6


# --- telephone variants not in core.degrade (callables, cached under their own ids) ----------


def alaw_codec(x: np.ndarray) -> np.ndarray:
    """G.711-style A-law (A=87.6) round trip with 8-bit codes (sign + 7 bits), like mulaw_*."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    a = np.abs(x)
    norm = 1.0 + np.log(A_LAW)
    comp = np.where(
        a < 1 / A_LAW, A_LAW * a / norm, (1 + np.log(np.maximum(a, 1 / A_LAW) * A_LAW)) / norm
    )
    c = np.round(comp * 127.0) / 127.0
    lin = np.where(c < 1 / norm, c * norm / A_LAW, np.exp(c * norm - 1) / A_LAW)
    return (np.sign(x) * lin).astype(np.float32)


def phone(y: np.ndarray, sr: int, rng=None, *, band=PHONE_BAND_HZ, law: str = "mu") -> np.ndarray:
    """core.degrade.telephone with configurable band edges and codec (mu-law or A-law)."""
    del rng
    y = np.asarray(y, dtype=np.float32)
    sos = butter(6, band, btype="bandpass", fs=sr, output="sos")
    bp = sosfiltfilt(sos, y, padlen=min(3 * (2 * len(sos) + 1), y.size - 1))
    narrow = soxr.resample(bp.astype(np.float32), sr, PHONE_SR, quality="HQ")
    line = mulaw_decode(mulaw_encode(narrow)) if law == "mu" else alaw_codec(narrow)
    out = soxr.resample(line, PHONE_SR, sr, quality="HQ")
    return np.pad(out[: y.size], (0, max(0, y.size - out.size))).astype(np.float32)


#: callable copies: name -> (transform, cache id)
CALLABLES = {
    "tel-alaw": (partial(phone, law="a"), "phone:300-3400:alaw"),
    "tel-200-3600": (partial(phone, band=(200.0, 3600.0)), "phone:200-3600:mulaw"),
    "tel-400-3100": (partial(phone, band=(400.0, 3100.0)), "phone:400-3100:mulaw"),
}

TRAINSETS: dict[str, list[str]] = {
    "ship": SHIP,
    "ship+telspeed": SHIP + [f"{s}+telephone" for s in SPEEDS],
    "ship+noisetel": SHIP + ["noise:15+telephone", "noise:30+telephone"],
    "ship+alaw": SHIP + ["tel-alaw"],
    "ship-alaw": [c if c != "telephone" else "tel-alaw" for c in SHIP],
    "ship+bands": SHIP + ["tel-200-3600", "tel-400-3100"],
    "aer4": [*SPEEDS, "telephone"],
}

#: vote name -> {member: weight} (weights fixed in advance; normalised when combined)
_MLPS = [f"mlp{i}" for i in range(N_MLP)]
VOTES: dict[str, dict[str, float]] = {
    "mlp5": dict.fromkeys(_MLPS, 1.0),
    "svm": {"svm": 1.0},
    "lr": {"lr": 1.0},
    "mlp5+svm": {**dict.fromkeys(_MLPS, 1 / N_MLP), "svm": 1.0},
    "mlp5+lr": {**dict.fromkeys(_MLPS, 1 / N_MLP), "lr": 1.0},
    "mlp5+svm+lr": {**dict.fromkeys(_MLPS, 1 / N_MLP), "svm": 1.0, "lr": 1.0},
    "mlp5+svm/6": {**dict.fromkeys(_MLPS, 1.0), "svm": 1.0},
    "mlp5+svm+lr/7": {**dict.fromkeys(_MLPS, 1.0), "svm": 1.0, "lr": 1.0},
    "mlp5+svm@cv": {**dict.fromkeys(_MLPS, 1.0), "svm": 1.0},  # share chosen by inner CV
}
CV_SHARES = (0.0, 1 / 6, 1 / 3, 1 / 2, 2 / 3)  # SVM share of the vote tried by mlp5+svm@cv


# --- data -------------------------------------------------------------------------------------


def load_matrices(paths, names) -> dict[str, np.ndarray]:
    """emo@1 rows (aligned with ``paths``) for each condition name; cached under /tmp/aer-cache."""
    fs = get_feature_set("emo", 1)
    out = {}
    for name in names:
        t0 = time.time()
        if name == "clean":
            kw = {}
        elif name in CALLABLES:
            kw = dict(zip(("transform", "transform_id"), CALLABLES[name], strict=True))
        else:
            kw = {"transform": name}
        ex = extract_features(paths, fs, cache_dir=CACHE, n_jobs=1, progress=False, **kw)
        if not ex.ok.all():
            raise SystemExit(f"{name}: {len(ex.failed)} files failed, e.g. {ex.failed[:2]}")
        out[name] = ex.X
        if ex.n_computed:
            print(f"  extracted {name}: {ex.n_computed} clips, {time.time() - t0:.0f} s")
    return out


def folds(groups: np.ndarray, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Outer GroupKFold(6): ``default`` unshuffled, else shuffled with that integer seed."""
    kw = {} if split == "default" else {"shuffle": True, "random_state": int(split)}
    return list(GroupKFold(6, **kw).split(np.zeros(len(groups)), groups=groups))


def training_rows(mats, aug, labels, groups, idx):
    """Clean rows ``idx`` then each augmented copy of them (core.evaluation's order)."""
    X = np.vstack([mats["clean"][idx]] + [mats[a][idx] for a in aug])
    reps = 1 + len(aug)
    return X, np.tile(labels[idx], reps), np.tile(groups[idx], reps)


# --- members ----------------------------------------------------------------------------------


def make_member(name: str, g_tr: np.ndarray, X_tr: np.ndarray):
    if name.startswith("mlp"):
        return MLPClassifier(
            hidden_layer_sizes=(256,), alpha=1.0, max_iter=600, random_state=RS + int(name[3:])
        )
    if name == "svm":
        svc = SVC(C=4.0, gamma="scale", class_weight="balanced")
        inner = list(GroupKFold(4).split(X_tr, groups=g_tr))  # speaker-grouped calibration
        return CalibratedClassifierCV(svc, method="sigmoid", cv=inner, ensemble=False)
    if name == "lr":
        return LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)
    raise ValueError(name)


def fit_members(members, X_tr, y_tr, g_tr, tests: dict[str, np.ndarray]) -> dict:
    """{member: {"fit_s": seconds, condition: probabilities}} (one scaler for all members)."""
    scaler = StandardScaler().fit(X_tr)
    Xs = scaler.transform(X_tr)
    Ts = {c: scaler.transform(T) for c, T in tests.items()}
    out = {}
    for m in members:
        t0 = time.perf_counter()
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = make_member(m, g_tr, Xs).fit(Xs, y_tr)
        res = {"fit_s": time.perf_counter() - t0, "classes": clf.classes_}
        res.update({c: clf.predict_proba(T) for c, T in Ts.items()})
        out[m] = res
    return out


def cached_members(key: Path, members, fit) -> dict:
    """Members' results from ``key``/<member>.npz, fitting (via ``fit(missing)``) what is absent."""
    have = {m: dict(np.load(key / f"{m}.npz", allow_pickle=False)) for m in members
            if (key / f"{m}.npz").exists()}  # fmt: skip
    missing = [m for m in members if m not in have]
    if missing:
        key.mkdir(parents=True, exist_ok=True)
        for m, res in fit(missing).items():
            np.savez(key / f"{m}.npz", **res)
            have[m] = res
    return have


def vote(res: dict, weights: dict[str, float], cond: str) -> np.ndarray:
    total = sum(weights.values())
    return sum(w / total * np.asarray(res[m][cond]) for m, w in weights.items() if w)


def svm_share_weights(share: float) -> dict[str, float]:
    return {**dict.fromkeys(_MLPS, (1 - share) / N_MLP), "svm": share}


# --- one run ----------------------------------------------------------------------------------


def run_split(task, trainset, split, mats, labels, groups, votes, members):
    """Per-fold UAR of every vote and condition, plus fit seconds per member and chosen shares."""
    aug = TRAINSETS[trainset]
    per_fold = []
    for k, (train, test) in enumerate(folds(groups, split)):
        X_tr, y_tr, g_tr = training_rows(mats, aug, labels, groups, train)
        tests = {c: mats[c][test] for c in TESTS}
        key = SCRATCH / "probs" / f"task{task}" / trainset / f"split-{split}" / f"fold{k}"
        res = cached_members(
            key, members, partial(fit_members, X_tr=X_tr, y_tr=y_tr, g_tr=g_tr, tests=tests)
        )
        classes = res[members[0]]["classes"]
        fold = {"uar": {}, "fit_s": {m: float(res[m]["fit_s"]) for m in members}}
        for v in votes:
            weights = VOTES[v]
            if v.endswith("@cv"):
                share = choose_share(task, trainset, split, k, mats, labels, groups, train)
                weights = svm_share_weights(share)
                fold["svm_share"] = share
            for c in TESTS:
                pred = classes[vote(res, weights, c).argmax(axis=1)]
                fold["uar"][(v, c)] = balanced_accuracy_score(labels[test], pred)
        per_fold.append(fold)
        clean = " ".join(f"{v}={fold['uar'][(v, 'clean')]:.3f}" for v in votes)
        print(f"    {trainset} split {split} fold {k}: {clean}", flush=True)
    return per_fold


def choose_share(task, trainset, split, k, mats, labels, groups, train) -> float:
    """SVM share of the vote by clean UAR on inner GroupKFold(4) out-of-fold training clips."""
    aug = TRAINSETS[trainset]
    members = [*_MLPS, "svm"]
    oof = {m: np.zeros((len(train), len(np.unique(labels)))) for m in members}
    classes = None
    for j, (itr, iva) in enumerate(GroupKFold(4).split(train, groups=groups[train])):
        X_tr, y_tr, g_tr = training_rows(mats, aug, labels, groups, train[itr])
        key = SCRATCH / "probs" / f"task{task}" / trainset / f"split-{split}" / f"fold{k}-inner{j}"
        tests = {"clean": mats["clean"][train[iva]]}
        fit = partial(fit_members, X_tr=X_tr, y_tr=y_tr, g_tr=g_tr, tests=tests)
        res = cached_members(key, members, fit)
        classes = res[members[0]]["classes"]
        for m in members:
            oof[m][iva] = res[m]["clean"]
    y_in = labels[train]
    scores = []
    for share in CV_SHARES:
        P = sum(w * oof[m] for m, w in svm_share_weights(share).items() if w)
        scores.append(balanced_accuracy_score(y_in, classes[P.argmax(axis=1)]))
    return CV_SHARES[int(np.argmax(scores))]


def _pm(v) -> str:
    v = np.asarray(v)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def report_svm_cost(X: np.ndarray, y: np.ndarray, g: np.ndarray) -> None:
    """Support vectors, serialised size and single-clip predict time of the SVM member."""
    Xs = StandardScaler().fit_transform(X)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        svm = make_member("svm", g, Xs).fit(Xs, y)
    fit_s = time.perf_counter() - t0
    n_sv = svm.calibrated_classifiers_[0].estimator.support_vectors_.shape[0]
    size_mb = len(sio.dumps(svm)) / 1e6
    cpu0 = time.process_time()
    for i in range(200):
        svm.predict_proba(Xs[i : i + 1])
    per_clip_ms = (time.process_time() - cpu0) / 200 * 1e3
    print(f"SVM on {len(y)} rows: fit {fit_s:.0f} s, {n_sv} support vectors, "
          f"{size_mb:.1f} MB serialised (skops), {per_clip_ms:.2f} ms CPU per clip")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--task", choices=["8", "4"], default="8")
    parser.add_argument("--trainsets", nargs="+", default=["ship"], choices=sorted(TRAINSETS))
    parser.add_argument("--votes", nargs="+", default=["mlp5", "mlp5+svm"], choices=list(VOTES))
    parser.add_argument("--splits", nargs="+", default=["default"], help="default and/or ints")
    parser.add_argument(
        "--svm-cost",
        action="store_true",
        help="instead: size and per-clip cost of the SVM member fitted on every training row",
    )
    args = parser.parse_args(argv)

    data = read_ravdess(args.data)
    labels = np.array(data.labels, dtype=str)
    groups = np.array(data.speakers, dtype=str)
    paths = list(data.paths)
    if args.task == "4":
        keep = np.isin(labels, FOUR)
        labels, groups = labels[keep], groups[keep]
        paths = [p for p, k in zip(paths, keep, strict=True) if k]
    needed = dict.fromkeys(["clean", *TESTS, *(a for t in args.trainsets for a in TRAINSETS[t])])
    mats = load_matrices(paths, needed)
    if args.svm_cost:
        X, y, g = training_rows(mats, TRAINSETS[args.trainsets[0]], labels, groups, slice(None))
        report_svm_cost(X, y, g)
        return
    members = list(dict.fromkeys(m for v in args.votes for m in VOTES[v]))
    print(f"{len(paths)} clips, {len(set(groups))} actors, task {args.task}; members {members}")

    results = {}
    for trainset in args.trainsets:
        for split in args.splits:
            t0 = time.time()
            results[(trainset, split)] = run_split(
                args.task, trainset, split, mats, labels, groups, args.votes, members
            )
            print(f"  {trainset} split {split}: {time.time() - t0:.0f} s", flush=True)

    base = ("ship" if args.task == "8" else "aer4", "mlp5")
    rows = [
        "| train | vote | split | clean UAR | telephone UAR | loss | noise:20 UAR "
        "| d clean | d tel | folds won (clean) | fit s (outer folds) |",
        "|---" * 11 + "|",
    ]
    dump = []
    for (trainset, split), per_fold in results.items():
        for v in args.votes:
            u = {c: np.array([f["uar"][(v, c)] for f in per_fold]) for c in TESTS}
            fit_s = sum(sum(f["fit_s"][m] for m in VOTES[v]) for f in per_fold)
            if v.endswith("@cv"):
                fit_s = float("nan")  # plus the inner-CV fits; see the log
            ref = results.get((base[0], split))
            d = {}
            if ref is not None and base[1] in args.votes:
                d = {
                    c: u[c] - np.array([f["uar"][(base[1], c)] for f in ref])
                    for c in ("clean", "telephone")
                }
            won = f"{int((d['clean'] > 0).sum())}/6" if d else "-"
            rows.append(
                f"| {trainset} | {v} | {split} | {_pm(u['clean'])} | {_pm(u['telephone'])} "
                f"| {_pm(u['clean'] - u['telephone'])} | {_pm(u['noise:20'])} "
                f"| {_pm(d['clean']) if d else '-'} | {_pm(d['telephone']) if d else '-'} "
                f"| {won} | {fit_s:.0f} |"
            )
            shares = [f["svm_share"] for f in per_fold] if v.endswith("@cv") else []
            dump.append(
                {"task": args.task, "train": trainset, "vote": v, "split": split,
                 **{c: u[c].round(4).tolist() for c in TESTS}, "fit_s": fit_s,
                 "svm_share": shares}
            )  # fmt: skip
    print("\n" + "\n".join(rows))
    # mean over the reshuffled splits (all splits other than "default")
    reshuffled = [s for s in args.splits if s != "default"]
    if reshuffled:
        print("\n| train | vote | clean UAR, mean over reshuffled splits | telephone |")
        print("|---|---|---|---|")
        for trainset in args.trainsets:
            for v in args.votes:
                r = [e for e in dump if e["train"] == trainset and e["vote"] == v
                     and e["split"] in reshuffled]  # fmt: skip
                cl = np.mean([np.mean(e["clean"]) for e in r])
                te = np.mean([np.mean(e["telephone"]) for e in r])
                print(f"| {trainset} | {v} | {cl:.3f} | {te:.3f} |")
    stamp = time.strftime("%H%M%S")
    out = SCRATCH / f"results-task{args.task}-{stamp}.json"
    out.write_text(json.dumps(dump, indent=1))
    print(f"\n(per-fold numbers in {out})")


if __name__ == "__main__":
    main()
