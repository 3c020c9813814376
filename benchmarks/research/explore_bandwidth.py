"""Recordings of other bandwidths: what the aer8 router makes of them, and copies that fix it.

Finished (benchmarks/research/). Measured at commits c957a8f to bf38115 (2026-12-01 to
2026-12-02): the router of ``aer8`` 2026.11.25-4 collapsed to 0.30-0.43 UAR on 8 kHz VoIP calls
and 9-14 kHz recordings; the bandwidth copies of recipe ``bw2`` fixed that (shipped in ``aer8``
2026.12.01-1), and four Opus copies (``bw2-opus``) fixed a phone call carried on through Opus
(+12 to +16 points, shipped in 2026.12.02-1); ``ship-nofloor`` changed nothing
(models/aer8.md: "What was tried", "Opus calls").

Research script, not shipped code. RAVDESS is 16 kHz studio audio, and the router's telephone
model had only seen the 300-3400 Hz phone band. Other corpora and real calls come in other
bandwidths: an 8 kHz call stored by a VoIP or call-centre recorder keeps the whole 0-4 kHz band
(``voip``), old corpora are sampled at 11.025 or 12 kHz (``rate:11025``, ``rate:12000``: nothing
above 5.5 or 6 kHz). This script scores recipes on such test audio, speaker-independently, the
way ``aer evaluate`` does, at a fifth of the cost:

- 6 speaker folds (``core.evaluation.splits``: GroupKFold by actor, unshuffled, or
  ``--fold-seed``), training rows stacked in ``aer evaluate``'s order (clean, then each copy);
- the router of preset ``emo-band-mlp5-temp``: rows split by ``narrowband_rows``, one model per
  side, each test clip scored by the model its route picks; but each side is ``emo-mlp5``, not
  ``emo-mlp5-temp``: the temperature never moves the argmax, so UAR is the same, with 5 MLP fits
  per side instead of 25.

Recipes (``--recipes``): ``ship`` is the aer8 2026.11.25-4 copy list (models/aer8.md); ``bw`` and
``bw2`` add the bandwidth copies ``BANDWIDTH`` or ``BANDWIDTH2`` (``bw2`` is aer8 2026.12.01-1);
``bw2-opus`` adds four copies through the Opus codec (``OPUS``: at other bitrates than the
tests', and after an 8 kHz phone line or VoIP leg, as when a phone caller joins a video call;
``bw2-opus`` is aer8 2026.12.02-1);
``ship-nofloor`` is ``ship`` with the telephone model blind to the columns a phone line leaves
at emo's spectral floor (the means and standard deviations of the mel bands above 4.2 kHz: on
telephone rows the stds move by 0.02 dB, which the scaler blows up to unit variance).

Prints per-condition UAR (mean over folds), the per-fold paired difference against the first
recipe, and the share of test clips routed to the telephone model. Features come from the
feature cache (``--cache-dir``; missing ones are extracted).

    python benchmarks/research/explore_bandwidth.py --recipes ship bw --jobs 2
    python benchmarks/research/explore_bandwidth.py --recipes bw bw2 --jobs 2
    python benchmarks/research/explore_bandwidth.py --recipes ship ship-nofloor --jobs 2
    python benchmarks/research/explore_bandwidth.py --recipes bw2 bw2-opus --jobs 2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402

from core.datasets import read_dataset  # noqa: E402
from core.evaluation import splits  # noqa: E402
from core.features import get_feature_set  # noqa: E402
from core.features.emo import narrowband_rows  # noqa: E402
from core.training import featurize, fit_pipeline  # noqa: E402

SHIP = (
    "speed:0.9,speed:0.95,speed:1.05,speed:1.1,noise:15,noise:30,pink:15,pink:30,telephone,"
    "speed:0.9+telephone,speed:0.95+telephone,speed:1.05+telephone,speed:1.1+telephone,"
    "noise:15+telephone,noise:30+telephone,pink:15+telephone,pink:30+telephone,"
    "telephone+line:15,telephone+line:30,g721,noise:15+g721,gsm,noise:15+gsm"
).split(",")
BANDWIDTH = "voip,noise:15+voip,voip+line:30,rate:11025,rate:12000".split(",")
BANDWIDTH2 = (
    "voip,speed:0.9+voip,speed:1.1+voip,noise:15+voip,pink:15+voip,voip+line:30,"
    "rate:10000,rate:11025,rate:12000"
).split(",")
#: Opus copies at bitrates the tests do not use (tests: 8, 12, 24 and 16 after a phone line)
OPUS = "opus:10,opus:16,telephone+opus:12,voip+opus:16".split(",")
RECIPES = {
    "ship": SHIP,
    "bw": SHIP + BANDWIDTH,
    "bw2": SHIP + BANDWIDTH2,
    "bw2-opus": SHIP + BANDWIDTH2 + OPUS,
    "ship-nofloor": SHIP,
}
#: emo columns the telephone model does not see, per recipe: top-band means and stds
FLOOR_COLUMNS = np.r_[33:40, 72:80]
NARROW_DROPS = {"ship-nofloor": FLOOR_COLUMNS}
TESTS = (
    None, "telephone", "gsm", "telephone+line:20", "noise:20+telephone",
    "voip", "voip+line:20", "noise:20+voip", "rate:8000",
    "rate:9000", "rate:10000", "rate:11025", "rate:12000", "rate:14000", "noise:20", "pink:20",
    "opus:8", "opus:12", "opus:24", "telephone+opus:16", "rate:8000+opus:12",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ravdess")
    parser.add_argument("--recipes", nargs="+", default=["ship", "bw"], choices=list(RECIPES))
    parser.add_argument("--features", default="emo@2")
    parser.add_argument("--cache-dir", default="/tmp/aer-cache")
    parser.add_argument("--fold-seed", type=int)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    name, version = args.features.split("@")
    fs = get_feature_set(name, int(version))
    dataset = read_dataset(args.data)
    specs = sorted({s for r in args.recipes for s in RECIPES[r]} | set(TESTS) - {None})
    tables = {None: featurize(dataset, fs, cache_dir=args.cache_dir, n_jobs=args.jobs)}
    for spec in specs:
        tables[spec] = featurize(dataset, fs, cache_dir=args.cache_dir, n_jobs=args.jobs,
                                 progress=False, transform=spec)  # fmt: skip
    rows = {spec: t.X for spec, t in tables.items()}
    clean = tables[None]
    folds = list(splits(clean, "speaker", fold_seed=args.fold_seed))
    runs = Parallel(n_jobs=args.jobs)(
        delayed(score_fold)(rows, clean.labels, RECIPES[r], train, test, NARROW_DROPS.get(r))
        for r in args.recipes
        for train, test in folds
    )
    results = {
        r: {c: np.array([run[c] for run in runs[i * len(folds) : (i + 1) * len(folds)]])
            for c in TESTS}
        for i, r in enumerate(args.recipes)
    }  # fmt: skip
    base = results[args.recipes[0]]
    print(f"{fs.id}, 6 speaker folds (fold seed {args.fold_seed}); UAR mean over folds, "
          f"d = per-fold paired difference against {args.recipes[0]}")  # fmt: skip
    print(f"{'test audio':<22}{'to tel.':>8}" + "".join(f"{r:>24}" for r in args.recipes))
    for cond in TESTS:
        routed = narrowband_rows(rows[cond]).mean()
        cells = []
        for r in args.recipes:
            d = results[r][cond] - base[cond]
            diff = f" d {d.mean():+.3f}±{d.std():.3f}" if r != args.recipes[0] else ""
            cells.append(f"{results[r][cond].mean():.3f}{diff}")
        print(f"{cond or 'clean':<22}{routed:>8.2f}" + "".join(f"{c:>24}" for c in cells))


def score_fold(rows: dict, labels: np.ndarray, copies: list[str], train, test, drop=None) -> dict:
    """Fit the router (emo-mlp5 per side) on one fold's training rows; UAR per test audio.
    ``drop``: columns the narrowband model does not see."""
    X = np.vstack([rows[None][train]] + [rows[spec][train] for spec in copies])
    y = np.tile(labels[train], 1 + len(copies))
    narrow = narrowband_rows(X)
    keep = np.setdiff1d(np.arange(X.shape[1]), [] if drop is None else drop)
    wide_model = fit_pipeline("emo-mlp5", X[~narrow], y[~narrow])[0]
    narrow_model = fit_pipeline("emo-mlp5", X[narrow][:, keep], y[narrow])[0]
    out = {}
    for cond in TESTS:
        Xt = rows[cond][test]
        routes = narrowband_rows(Xt)
        pred = np.where(routes, narrow_model.predict(Xt[:, keep]), wide_model.predict(Xt))
        out[cond] = balanced_accuracy_score(labels[test], pred)
    return out


if __name__ == "__main__":
    main()
