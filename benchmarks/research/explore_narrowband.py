"""Can a narrowband front end close the telephone gap? (research script, not shipped code)

Finished (benchmarks/research/). Measured at commit 60cb03e (2026-11-24) on ``emo@1``: no.
Band-limiting every input, or passing it through the telephone channel, shrinks the telephone
loss to 0.7 / 0.1 points only by lowering clean UAR to 0.581 / 0.572; fusing wideband and
narrowband features lost 1-1.5 points on both; a model trained and tested on telephone audio
only reaches 0.571. The missing information is outside the band (models/aer8.md, "What was
tried": "Narrowband front end").

Every configuration extracts emo@1 after a *front end* applied to each signal, after any
test condition or training augmentation:

    wb    identity (plain emo@1)
    nb    band-limit to 300-3400 Hz (the 6th-order Butterworth + sosfiltfilt of
          core.degrade.telephone, without resampling or mu-law)
    tel   the full core.degrade.telephone channel (300-3400 Hz, 8 kHz G.711 mu-law)
    wb+nb concatenation of the wb and nb vectors (fusion)
    wb+tel concatenation of the wb and tel vectors (fusion)

Training set: clean + speed 0.9/0.95/1.05/1.1 + telephone copies of the training actors, all
through the front end. Tests: clean, telephone and noise:20 copies of the test actors, through
the same front end. Scored like explore_accuracy.py: 8-class UAR, GroupKFold(6) by
actor, mean +- std over the folds; "loss" is the per-fold clean - telephone UAR difference and
"d clean" the per-fold clean UAR difference against wb (same folds, so both are paired).

Features are cached in /tmp/aer-cache/emo@1/ under transform ids naming the front end.

    python benchmarks/research/explore_narrowband.py --configs wb nb tel wb+nb --classifier mlp5
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.signal import butter, sosfiltfilt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from explore_accuracy import CLASSIFIERS, DEFAULT_DATA, evaluate, features  # noqa: E402

from core.datasets import read_ravdess  # noqa: E402
from core.degrade import PHONE_BAND_HZ, parse_degradation, telephone  # noqa: E402
from core.features import get_feature_set  # noqa: E402

SPEEDS = (0.9, 0.95, 1.05, 1.1)
TRAIN_AUG = [f"speed:{f}" for f in SPEEDS] + ["telephone"]
TESTS = ("clean", "telephone", "noise:20")


def band_limit(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` band-passed to 300-3400 Hz with the filter core.degrade.telephone uses."""
    y = np.asarray(y, dtype=np.float32)
    sos = butter(6, PHONE_BAND_HZ, btype="bandpass", fs=sr, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), y.size - 1)
    return sosfiltfilt(sos, y, padlen=padlen).astype(np.float32)


def _through(y: np.ndarray, sr: int, rng: np.random.Generator, cond: str, front: str):
    """Condition ``cond`` (a degradation spec), then front end ``front``."""
    y = parse_degradation(cond)(y, sr, rng)
    if front == "nb":
        return band_limit(y, sr)
    if front == "tel":
        return telephone(y, sr)
    return y


FRONT_IDS = {"nb": "bandlimit:300-3400/butter6-sosfiltfilt", "tel": "telephone-frontend"}


def matrix(fs, paths, cond: str, front: str, n_jobs: int) -> np.ndarray:
    """emo@1 rows of ``paths`` under condition ``cond`` seen through front end ``front``."""
    if front == "wb":  # plain specs: shares the cache explore_accuracy.py filled
        return features(fs, paths, n_jobs, None if cond == "clean" else cond)
    transform = partial(_through, cond=cond, front=front)
    return features(fs, paths, n_jobs, transform, f"{cond}>>{FRONT_IDS[front]}")


def config_matrices(fs, paths, config: str, n_jobs: int) -> dict[str, np.ndarray]:
    """{condition: matrix} for every training and test condition of ``config``."""
    fronts = config.split("+")
    conds = dict.fromkeys(("clean", *TRAIN_AUG, *TESTS))
    return {
        c: np.hstack([matrix(fs, paths, c, f, n_jobs) for f in fronts]).astype(np.float32)
        for c in conds
    }


def _pm(v: np.ndarray) -> str:
    return f"{v.mean():.3f} ± {v.std():.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--configs", nargs="+", default=["wb", "nb", "tel", "wb+nb"],
        choices=["wb", "nb", "tel", "wb+nb", "wb+tel", "nb+tel"],
    )  # fmt: skip
    parser.add_argument("--classifier", default="mlp5", choices=sorted(CLASSIFIERS))
    parser.add_argument("--n-jobs", type=int, default=2, help="processes (at most 2 here)")
    args = parser.parse_args(argv)
    n_jobs = max(1, min(args.n_jobs, 2))

    data = read_ravdess(args.data)
    paths, labels, actors = data.paths, np.array(data.labels), np.array(data.speakers)
    fs = get_feature_set("emo", 1)
    print(f"{len(paths)} clips, {len(set(actors))} actors; {args.classifier}; GroupKFold(6)\n")
    header = "| config | dim | clean UAR | telephone UAR | noise:20 UAR | loss | d clean vs wb |"
    rows = [header, "|---" * 7 + "|"]
    base_clean = None
    for config in args.configs:
        t0 = time.time()
        mats = config_matrices(fs, paths, config, n_jobs)
        t1 = time.time()
        res = evaluate(
            args.classifier, mats["clean"], labels, actors,
            [mats[a] for a in TRAIN_AUG], {c: mats[c] for c in TESTS}, n_jobs,
        )  # fmt: skip
        uar = {c: np.array([r[0][c][1] for r in res]) for c in TESTS}
        if config == "wb":
            base_clean = uar["clean"]
        d_clean = _pm(uar["clean"] - base_clean) if base_clean is not None else "n/a"
        row = (
            f"| {config} | {mats['clean'].shape[1]} | {_pm(uar['clean'])} | "
            f"{_pm(uar['telephone'])} | {_pm(uar['noise:20'])} | "
            f"{_pm(uar['clean'] - uar['telephone'])} | {d_clean} |"
        )
        rows.append(row)
        print(row, f"(features {t1 - t0:.0f} s, fit {time.time() - t1:.0f} s)", flush=True)
        print("   per-fold clean", np.round(uar["clean"], 3), "tel", np.round(uar["telephone"], 3))
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
