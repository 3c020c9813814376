"""A bandwidth router: narrowband (telephone) clips to a telephone expert, the rest to aer8.

Finished (benchmarks/research/). Measured at commits 7a5a710 and de97180 (2026-11-25, against
``aer8`` 2026.11.25-2, ``emo@2`` without a router: "aer8" and "shipped" below mean that model);
the routing table was extended at e3f97be (2026-12-02) to the bandwidth and Opus copies.
Conclusion: the rule routed every clip of every condition tested then the right way; an expert
(``tel9``) gains 1-2.6 points on clean telephone audio (inside the fold spread) and +19 on noisy
telephone audio, on both fold assignments. Shipped as preset ``emo-band-mlp5-temp`` in ``aer8``
2026.11.25-3 (models/aer8.md, "What was tried": "Bandwidth router"). Results as measured then:
at the end of this docstring.

Research script, not shipped code. The issue's target is a telephone loss (clean UAR minus
telephone UAR) of at most 3 points with clean UAR down by at most 1 point. One joint model never
got there (models/aer8.md, "What was tried"), so this script measures a two-model design:

    route(x) = narrowband  if  flat(x) < 2 dB  and  hf(x) < -20 dB  else  wideband
    flat(x)  = mean of emo@2 columns 74..79   (std over active frames of log-mel bands 34..39)
    hf(x)    = mean of emo@2 columns 33..39 - mean of emo@2 columns 4..27   (dB)

Columns 0..39 of an emo@2 vector are the per-band means, columns 40..79 the per-band standard
deviations over active frames, of the level-normalised log-mel spectrum (40 mel bands,
50-7600 Hz; core/features/emo.py). Bands 33..39 lie wholly above 4.23 kHz (34..39 above
4.56 kHz); bands 4..27 (344-3141 Hz) lie inside the telephone band. An 8 kHz phone line carries
nothing above 4 kHz, so there every frame of the top bands sits exactly at emo's -70 dB spectral
floor: they do not move (flat ~ 0 dB) and they lie far below the speech bands (hf <= -28 dB).
Wideband speech modulates its top bands (flat >= 6 dB); noise can make them steady (white noise
at 10 dB SNR: flat down to 1.1 dB) but then they are loud (hf >= -13 dB). The rule needs no
training and no second pass over the signal: it reads the vector the wideband model needs
anyway. Honesty note: a first rule fixed in advance (hf < -45 dB alone) misrouted most
telephone clips (telephone hf reaches -30 dB, clean speech goes down to -25 dB: too close), so
the two thresholds above were then set at round numbers inside the gaps of the pooled
distributions of all 1440 clips under every condition (``--route-only`` prints them). They were
looked at on all actors, test folds included, but never against any UAR.

Wideband branch: the shipped aer8 recipe, unchanged: emo@2, StandardScaler + soft vote of 5
MLPClassifier(256, alpha=1.0, max_iter=600, random_state=42..46) (``core.presets`` emo-mlp5;
the shipped emo-mlp5-temp only adds a temperature, which never changes the argmax, so UAR is the
same), trained on clean + speed:0.9/0.95/1.05/1.1 + telephone + noise:15/30 + pink:15/30 copies of
the training actors, rows stacked in core.evaluation's order, so on the default folds it
reproduces ``aer evaluate`` (clean 0.628, telephone 0.557).

Experts (``--experts``; each a training set x classifier, rows of the training actors only):

    ship       the shipped model itself (no routing; the baseline)
    tel5       telephone(clean) + telephone(speed x4)                                  [mlp5]
    tel9       tel5 + telephone(noise:15, noise:30, pink:15, pink:30)                  [mlp5]
    tel9-svm   tel9 rows, StandardScaler + SVC(rbf, C=4, gamma=scale, balanced)
    tel9-a3    tel9 rows, mlp5 with alpha=3.0
    tel12      tel9 + A-law, 200-3600 Hz and 400-3100 Hz telephone copies              [mlp5]
    ship+tel9  the shipped rows + the telephone-side copies of tel9 (one joint model) [mlp5]
    nb-tel9    tel9 rows, on ``emo-nb`` features (below)                               [mlp5]
    a|b[|c]    soft vote of fitted experts a, b (, c): mean of their probabilities, equal
               weights fixed in advance (``VOTES``), e.g. ship|nb-tel9

``emo-nb`` is emo@2's own code path with one table changed: its 40 mel bands span 250-3600 Hz
(inside the phone band) instead of 50-7600 Hz, so that every log-mel / MFCC statistic describes
the part of the spectrum a phone line carries. Prototype only: core/features/emo.py is not
edited; the table is swapped in-process and rows are cached under /tmp/aer-explore-router.

Protocol: outer GroupKFold(6) by actor, unshuffled (``--fold-seed`` none, as models/aer8.md) or
GroupKFold(6, shuffle=True, random_state=S) (``--fold-seed S``, as ``aer evaluate --fold-seed``).
Every expert is scored on the same folds as the shipped model: "router" rows take each test
clip's prediction from the model its route picks, so misrouted clips count. "loss" is the
per-fold clean - telephone UAR, "d clean" / "d tel" the per-fold difference against the shipped
model (paired); mean +- std over the 6 folds.

Fitted predictions are cached in /tmp/aer-explore-router/preds (delete to refit). One process,
one BLAS thread. Commands behind the reported numbers (repository root):

    python benchmarks/research/explore_router.py --route-only
    python benchmarks/research/explore_router.py --experts ship tel9 tel5 tel9-svm 'ship|tel9'
    python benchmarks/research/explore_router.py --experts ship tel9 nb-tel9 'ship|tel9' \
        'ship|nb-tel9' 'tel9|nb-tel9' 'ship|tel9|nb-tel9'
    python benchmarks/research/explore_router.py --experts ship tel9 tel12 ship+tel9 tel9-a3
    python benchmarks/research/explore_router.py --fold-seed 1 --experts ship tel9 nb-tel9 \
        'ship|tel9' 'ship|nb-tel9' 'tel9|nb-tel9' 'ship|tel9|nb-tel9'

Results (default folds / --fold-seed 1; scikit-learn 1.9.1): routing sends every clip of every
condition the right way (0 misroutes in 1440 each), so clean UAR is the shipped 0.628 / 0.616.
Telephone UAR after routing: shipped 0.557 / 0.538; tel9 0.567 / 0.552; ship|tel9|nb-tel9
0.579 / 0.565 (best on both, +2.2 / +2.7 points, 5/6 folds each); loss 4.9 / 5.1 points: the
3-point target is not met. On noisy calls (noise:20+telephone) the shipped model falls to
0.320 / 0.316 and tel9 lifts it to 0.515 / 0.516, the router's clearest gain.

About 3 minutes per fitted expert (6 folds of a 5-MLP vote on 6000-12000 rows, one core), 5
for ship+tel9 (21600 rows); SVC 20 s. emo-nb extraction: about 20 s per condition.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import scipy.sparse  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.ensemble import VotingClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:  # the installed package, or a snapshot named by PYTHONPATH
    import core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))
from explore_ensemble import CALLABLES  # noqa: E402  (A-law and band-edge telephone copies)

from core.audio import load  # noqa: E402
from core.cache import degradation_seed, extract_features, file_sha256  # noqa: E402
from core.datasets import read_ravdess  # noqa: E402
from core.degrade import parse_degradation  # noqa: E402
from core.features import emo as emo_mod  # noqa: E402
from core.features import get_feature_set  # noqa: E402
from core.features.base import as_signal  # noqa: E402
from core.features.emo import (  # noqa: E402
    NARROWBAND_STD_DB,
    NARROWBAND_TOP_DB,
    narrowband_rows,
    top_band_level_db,
    top_band_std_db,
)
from core.presets import RANDOM_STATE, build_pipeline  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess"
CACHE = Path("/tmp/aer-cache")
SCRATCH = Path("/tmp/aer-explore-router")

# --- routing rule: core.features.emo.narrowband_rows (see the module docstring) --------------
FLAT_MAX_DB = NARROWBAND_STD_DB
HF_MAX_DB = NARROWBAND_TOP_DB

# --- conditions -------------------------------------------------------------------------------
SPEEDS = ["speed:0.9", "speed:0.95", "speed:1.05", "speed:1.1"]
SHIP = [*SPEEDS, "telephone", "noise:15", "noise:30", "pink:15", "pink:30"]
TEL5 = ["telephone", *(f"{s}+telephone" for s in SPEEDS)]
TELNOISE = [f"{n}+telephone" for n in ("noise:15", "noise:30", "pink:15", "pink:30")]
TEL9 = TEL5 + TELNOISE
WB_TESTS = ["clean", "gain:-12", "noise:20", "noise:10", "pink:20", "pink:10", "brown:20",
            "brown:10"]  # fmt: skip
NB_TESTS = ["telephone", "noise:20+telephone", "pink:20+telephone"]
TESTS = WB_TESTS + NB_TESTS
#: conditions only routed (never scored): training copies, and noise added after the line
#: other bandwidths and Opus calls (aer8 2026.12.01-1 and 2026.12.02-1: explore_bandwidth.py)
BANDWIDTHS = ["voip", "rate:8000", "rate:9000", "rate:10000", "rate:11025", "rate:12000",
              "rate:14000", "opus:8", "opus:12", "opus:24", "telephone+opus:16",
              "rate:8000+opus:12"]  # fmt: skip
ROUTE_ONLY = [*SPEEDS, "noise:15", "noise:30", "pink:15", "pink:30", *TEL9[1:],
              *CALLABLES, "telephone+noise:20", *BANDWIDTHS]  # fmt: skip
#: where the right route is narrowband (Opus at 8 kbit/s: the encoder narrows the band itself)
NARROW = set(NB_TESTS) | set(TEL9) | set(CALLABLES) | {"voip", "rate:8000", "rate:9000", "opus:8"}
#: no right answer: narrowband speech under wideband noise added after the line (not a codec
#: chain a real call produces; the rule sees steady, loud top bands and sends it wideband),
#: a 10 kHz recording (nothing above 5 kHz: the rule's edge, both models trained on such
#: copies), and narrowband audio carried on through a wideband Opus leg (codec noise above 4 kHz)
EITHER = {"telephone+noise:20", "rate:10000", "telephone+opus:16", "rate:8000+opus:12"}


@dataclass(frozen=True)
class Recipe:
    train: tuple[str, ...]  # conditions stacked in this order (first block, then copies)
    clf: str = "mlp5"
    features: str = "emo@2"


RECIPES: dict[str, Recipe] = {
    "ship": Recipe(("clean", *SHIP)),
    "tel5": Recipe(tuple(TEL5)),
    "tel9": Recipe(tuple(TEL9)),
    "tel9-svm": Recipe(tuple(TEL9), clf="svm"),
    "tel9-a3": Recipe(tuple(TEL9), clf="mlp5-a3"),
    "tel12": Recipe((*TEL9, *CALLABLES)),
    "ship+tel9": Recipe(("clean", *SHIP, *TEL9[1:])),
    "nb-tel9": Recipe(tuple(TEL9), features="emo-nb"),
}


# --- features ---------------------------------------------------------------------------------

NB_FMIN, NB_FMAX = 250.0, 3600.0


def _nb_tables() -> dict:
    """emo's tables with the 40 mel bands moved inside the phone band (250-3600 Hz)."""
    tb = dict(emo_mod._tables())
    mel = librosa.filters.mel(
        sr=emo_mod.SAMPLE_RATE, n_fft=emo_mod.N_FFT, n_mels=emo_mod.N_MELS,
        fmin=NB_FMIN, fmax=NB_FMAX,
    )  # fmt: skip
    tb["mel_t"] = scipy.sparse.csr_matrix(mel.T.astype(np.float32))
    return tb


def extract_emo_nb(y: np.ndarray, sr: int) -> np.ndarray:
    """``emo@2`` with the narrowband mel table (in-process swap; core is not edited)."""
    y = as_signal(y, sr, sample_rate=emo_mod.SAMPLE_RATE, min_duration_s=emo_mod.MIN_DURATION_S)
    y = scipy.signal.sosfilt(emo_mod._highpass(), y).astype(np.float32)
    original, tables = emo_mod._tables, _nb_tables()
    emo_mod._tables = lambda: tables
    try:
        return emo_mod._extract(y)
    finally:
        emo_mod._tables = original


def _spec_kw(cond: str) -> dict:
    if cond == "clean":
        return {}
    if cond in CALLABLES:
        return dict(zip(("transform", "transform_id"), CALLABLES[cond], strict=True))
    return {"transform": cond}


def emo2_matrix(paths, cond: str) -> np.ndarray:
    ex = extract_features(paths, get_feature_set("emo", 2), cache_dir=CACHE, n_jobs=1,
                          progress=False, **_spec_kw(cond))  # fmt: skip
    if not ex.ok.all():
        raise SystemExit(f"emo@2 {cond}: {len(ex.failed)} files failed, e.g. {ex.failed[:2]}")
    return ex.X


def nb_matrix(paths, cond: str) -> np.ndarray:
    """emo-nb rows of ``paths`` under ``cond``, with core.cache's per-file noise seeds."""
    target = SCRATCH / "features" / "emo-nb" / (cond.replace(":", "_").replace("+", "__") + ".npy")
    if target.exists():
        return np.load(target)
    t0 = time.time()
    kw = _spec_kw(cond)
    transform, spec = None, None
    if "transform" in kw:
        transform = kw["transform"]
        spec = f"callable:{kw['transform_id']}" if "transform_id" in kw else transform
        if isinstance(transform, str):
            transform = parse_degradation(transform)
    rows = []
    for p in paths:
        y = load(p, sr=16_000, mono=True, min_duration_s=emo_mod.MIN_DURATION_S)
        if transform is not None:
            rng = np.random.default_rng(degradation_seed(file_sha256(p), spec))
            y = np.asarray(transform(y, 16_000, rng), np.float32)
        rows.append(extract_emo_nb(y, 16_000))
    X = np.stack(rows).astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, X)
    print(f"  extracted emo-nb {cond}: {len(paths)} clips, {time.time() - t0:.0f} s", flush=True)
    return X


def matrices(paths, conds, features: str) -> dict[str, np.ndarray]:
    get = emo2_matrix if features == "emo@2" else nb_matrix
    return {c: get(paths, c) for c in dict.fromkeys(conds)}


# --- models -----------------------------------------------------------------------------------


def build(clf: str) -> Pipeline:
    if clf == "mlp5":
        return build_pipeline("emo-mlp5", RANDOM_STATE)  # exactly the shipped vote
    if clf == "mlp5-a3":
        members = [
            (f"m{i}", MLPClassifier(hidden_layer_sizes=(256,), alpha=3.0, max_iter=600,
                                    random_state=RANDOM_STATE + i))
            for i in range(5)
        ]  # fmt: skip
        return Pipeline([("scaler", StandardScaler()),
                         ("clf", VotingClassifier(members, voting="soft"))])  # fmt: skip
    if clf == "svm":
        svc = SVC(C=4.0, gamma="scale", class_weight="balanced")
        return Pipeline([("scaler", StandardScaler()), ("clf", svc)])
    raise ValueError(clf)


#: experts that average the probabilities of fitted recipes (equal weights, fixed in advance)
VOTES: dict[str, tuple[str, ...]] = {
    "ship|tel9": ("ship", "tel9"),
    "ship|nb-tel9": ("ship", "nb-tel9"),
    "tel9|nb-tel9": ("tel9", "nb-tel9"),
    "ship|tel9|nb-tel9": ("ship", "tel9", "nb-tel9"),
}


def vote_predictions(members: list[list[dict]], conds) -> list[dict]:
    """Per fold {condition: argmax of the members' mean probability}."""
    out = []
    for per_member in zip(*members, strict=True):
        classes = per_member[0]["classes"]
        fold = {"fit_s": np.array(sum(float(m["fit_s"]) for m in per_member))}
        for c in conds:
            fold[c] = classes[np.mean([m[f"P:{c}"] for m in per_member], axis=0).argmax(axis=1)]
        out.append(fold)
    return out


def folds(groups: np.ndarray, fold_seed: int | None):
    kw = {} if fold_seed is None else {"shuffle": True, "random_state": fold_seed}
    return list(GroupKFold(6, **kw).split(np.zeros(len(groups)), groups=groups))


def fold_predictions(
    name, recipe, mats, labels, train, test, conds, key: Path
) -> dict[str, np.ndarray]:
    """{test condition: predicted labels of the test rows} for ``conds``, cached in ``key``."""
    if key.exists():
        return dict(np.load(key, allow_pickle=False))
    X = np.vstack([mats[c][train] for c in recipe.train])
    y = np.tile(labels[train], len(recipe.train))
    t0 = time.perf_counter()
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clone(build(recipe.clf)).fit(X, y)
    out = {c: model.predict(mats[c][test]).astype(str) for c in conds}
    if hasattr(model, "predict_proba"):  # kept for the probability votes (``VOTES``)
        out["classes"] = model.classes_.astype(str)
        out.update({f"P:{c}": model.predict_proba(mats[c][test]) for c in conds})
    out["fit_s"] = np.array(time.perf_counter() - t0)
    key.parent.mkdir(parents=True, exist_ok=True)
    np.savez(key, **out)
    print(f"    {name} fold {key.stem}: {len(y)} rows, fit {float(out['fit_s']):.0f} s", flush=True)
    return out


# --- reporting --------------------------------------------------------------------------------


def _pm(v) -> str:
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def routing_table(emo2: dict[str, np.ndarray]) -> list[str]:
    rows = [
        "| condition | right route | flat dB: min / median / max | hf dB: min / median / max "
        "| misrouted |",
        "|---|---|---|---|---|",
    ]
    for cond, X in emo2.items():
        hf, flat = top_band_level_db(X), top_band_std_db(X)
        nb = narrowband_rows(X)
        want_nb = cond in NARROW
        wrong = int((nb != want_nb).sum())
        if cond in EITHER:
            rows.append(
                f"| {cond} | either | {flat.min():.2f} / {np.median(flat):.2f} / {flat.max():.2f} "
                f"| {hf.min():.1f} / {np.median(hf):.1f} / {hf.max():.1f} "
                f"| routed narrowband: {int(nb.sum())}/{len(hf)} |"
            )
            continue
        rows.append(
            f"| {cond} | {'narrow' if want_nb else 'wide'} | {flat.min():.2f} / "
            f"{np.median(flat):.2f} / {flat.max():.2f} | {hf.min():.1f} / "
            f"{np.median(hf):.1f} / {hf.max():.1f} | {wrong}/{len(hf)} ({wrong / len(hf):.2%}) |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--experts", nargs="+", default=["ship", "tel9"], choices=[*RECIPES, *VOTES]
    )
    parser.add_argument(
        "--fold-seed",
        type=int,
        default=None,
        help="shuffle actors into folds (default: unshuffled GroupKFold)",
    )
    parser.add_argument("--route-only", action="store_true", help="only the routing table")
    args = parser.parse_args(argv)  # fmt: skip

    data = read_ravdess(args.data)
    paths = list(data.paths)
    labels = np.array(data.labels, dtype=str)
    groups = np.array(data.speakers, dtype=str)
    emo2 = matrices(paths, [*TESTS, *ROUTE_ONLY], "emo@2")
    print(f"{len(paths)} clips, {len(set(groups))} actors; route: flat < {FLAT_MAX_DB} dB and "
          f"hf < {HF_MAX_DB} dB -> narrowband; folds: GroupKFold(6){'' if args.fold_seed is None else f', shuffle seed {args.fold_seed}'}\n")  # fmt: skip  # noqa: E501
    print("\n".join(routing_table(emo2)) + "\n", flush=True)
    if args.route_only:
        return
    narrow = {c: narrowband_rows(emo2[c]) for c in TESTS}

    experts = list(dict.fromkeys(["ship", *args.experts]))
    fitted = list(dict.fromkeys(m for e in experts for m in VOTES.get(e, (e,))))
    split = "default" if args.fold_seed is None else f"seed{args.fold_seed}"
    plan = folds(groups, args.fold_seed)
    preds: dict[str, list[dict]] = {}
    for name in fitted:
        recipe = RECIPES[name]
        t0 = time.time()
        # an expert only ever sees clips routed to it: skip conditions that route none there
        conds = TESTS if name == "ship" else [c for c in TESTS if c in NB_TESTS or narrow[c].any()]
        mats = matrices(paths, [*recipe.train, *conds], recipe.features)
        preds[name] = [
            fold_predictions(name, recipe, mats, labels, tr, te, conds,
                             SCRATCH / "preds" / name / split / f"fold{k}.npz")
            for k, (tr, te) in enumerate(plan)
        ]  # fmt: skip
        print(f"  {name}: {time.time() - t0:.0f} s", flush=True)
    for name in experts:
        if name in VOTES:
            conds = [c for c in TESTS if c in NB_TESTS or narrow[c].any()]
            preds[name] = vote_predictions([preds[m] for m in VOTES[name]], conds)

    def uar(name: str, cond: str, routed: bool) -> np.ndarray:
        """Per-fold UAR of ``name`` as expert (routed: wideband clips go to ship)."""
        out = []
        for k, (_, te) in enumerate(plan):
            to_expert = narrow[cond][te] if routed else np.ones(len(te), bool)
            if not to_expert.any():
                p = preds["ship"][k][cond]
            else:
                p = np.where(to_expert, preds[name][k][cond], preds["ship"][k][cond])
            out.append(balanced_accuracy_score(labels[te], p))
        return np.array(out)

    base = {c: uar("ship", c, False) for c in TESTS}
    header = (
        "| expert | fit s | expert alone: tel | n20+tel | router: clean | telephone | loss "
        "| d clean | d tel | tel folds won "
        "| n20+tel | p20+tel | noise:20 | pink:20 | brown:20 | gain:-12 |"
    )
    rows = [header, "|---" * 16 + "|"]
    for name in experts:
        alone = {c: uar(name, c, False) for c in NB_TESTS}
        r = {c: uar(name, c, True) for c in TESTS}
        fit_s = sum(float(f["fit_s"]) for f in preds[name])
        rows.append(
            f"| {name} | {fit_s:.0f} | {_pm(alone['telephone'])} | "
            f"{_pm(alone['noise:20+telephone'])} | {_pm(r['clean'])} | {_pm(r['telephone'])} | "
            f"{_pm(r['clean'] - r['telephone'])} | {_pm(r['clean'] - base['clean'])} | "
            f"{_pm(r['telephone'] - base['telephone'])} | "
            f"{int((r['telephone'] > base['telephone']).sum())}/{len(plan)} | "
            f"{_pm(r['noise:20+telephone'])} | "
            f"{_pm(r['pink:20+telephone'])} | {r['noise:20'].mean():.3f} | "
            f"{r['pink:20'].mean():.3f} | {r['brown:20'].mean():.3f} | {r['gain:-12'].mean():.3f} |"
        )
        print(f"  {name}: clean {np.round(r['clean'], 3)} tel {np.round(r['telephone'], 3)}")
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
