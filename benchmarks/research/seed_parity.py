"""Does ``seed180@1`` (one float32 STFT) classify like the seed's librosa features?

Finished (benchmarks/research/). First run at commit 5cc4c97 (2026-11-24); re-run on 2026-12-04
(main at deb73c7; ``seed180@1`` is the one-pass code of 2026-11-25): yes. The chroma differs on
19 of 1440 clips (at most 0.077), MFCC and mel means by at most 4.1e-06 relative; UAR seed-300
0.348 +- 0.058 (librosa) against 0.347 +- 0.057, seed-deep-unscaled (the unstable unscaled MLP)
0.376 +- 0.081 against 0.364 +- 0.048: differences well inside the fold spread.

The seed's chroma uses librosa's tuning estimate, a histogram argmax: float32 rounding in our
single STFT moves a near-tie to another bin on a few percent of clips. This script extracts
both versions for every RAVDESS clip, counts the clips whose chroma differs, and scores the
same classifiers on both with GroupKFold(6) by actor.

    python benchmarks/research/seed_parity.py            # ~1 min on one core
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench_features
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench_features import ours_extract_feature, seed_extract_feature  # noqa: E402

from core.datasets import read_ravdess  # noqa: E402
from core.presets import build_pipeline  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ravdess"
CACHE = Path("/tmp/aer-cache/seed-parity")


def matrices(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(seed's librosa features, seed180@1 features) for ``paths``, cached as .npy."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for name, fn in (("librosa", seed_extract_feature), ("seed180-1", ours_extract_feature)):
        target = CACHE / f"{name}-{len(paths)}.npy"
        if not target.exists():
            np.save(target, np.array([fn(p) for p in paths], dtype=np.float64))
        out.append(np.load(target))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--presets", nargs="+", default=["seed-300", "seed-deep-unscaled"])
    args = parser.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")
    data = read_ravdess(args.data)
    labels, actors = np.array(data.labels), np.array(data.speakers)
    seed, ours = matrices(data.paths)

    chroma = slice(40, 52)
    diff = np.abs(seed[:, chroma] - ours[:, chroma]).max(axis=1)
    rest = np.r_[0:40, 52:180]
    rel = np.abs(seed[:, rest] - ours[:, rest]) / np.abs(seed[:, rest]).max(axis=0)
    print(f"{len(labels)} clips: chroma differs (> 1e-4) on {(diff > 1e-4).sum()} "
          f"(max {diff.max():.3f}); MFCC/mel max rel. diff {rel.max():.1e}")  # fmt: skip

    folds = list(GroupKFold(6).split(seed, labels, actors))
    for preset in args.presets:
        for name, X in (("seed (librosa)", seed), ("seed180@1", ours)):
            uar = [
                balanced_accuracy_score(
                    labels[te], build_pipeline(preset).fit(X[tr], labels[tr]).predict(X[te])
                )
                for tr, te in folds
            ]
            print(f"{preset:20s} {name:15s} UAR {np.mean(uar):.3f} ± {np.std(uar):.3f}")


if __name__ == "__main__":
    main()
