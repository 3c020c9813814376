"""How often ``emo``'s F0 is grossly wrong on clean and telephone audio.

For a spread of RAVDESS clips, librosa's pYIN on the clean clip is the reference; each
``emo`` version's per-frame F0 (``core.features.emo._frame_descriptors``) is computed on the
clip under each test condition, and a frame counts as a gross error when it is more than 2
semitones from the reference (octave jumps are 12, a third of the period 19). Frames count
where pYIN calls the clean clip voiced, the ``emo`` voicing strength reaches the voicing
threshold and the frame is active. Prints the gross-error rate and its upward share.

    python benchmarks/explore_pitch.py --data ../shared/data/ravdess

``--uar emo@2 emo@3`` then asks what the pitch is worth to the shipped recipe: for each feature
set, the bandwidth router of ``aer8`` (its training copies, 6 speaker folds as ``aer evaluate``)
with ``emo-mlp5`` on each side instead of ``emo-mlp5-temp`` (a temperature never moves the
argmax, so UAR is the same at a fifth of the fits), scored on clean and phone test audio, with
per-fold differences against the first feature set. Features come from ``--cache-dir``.

    python benchmarks/explore_pitch.py --uar emo@2 emo@3 --cache-dir /tmp/aer-cache --jobs 2
"""

from __future__ import annotations

import argparse
import warnings

import librosa
import numpy as np
import scipy.signal
from joblib import Parallel, delayed
from sklearn.metrics import balanced_accuracy_score

from core.audio import load
from core.datasets import read_dataset
from core.degrade import parse_degradation
from core.evaluation import splits
from core.features import emo, get_feature_set
from core.features.emo import narrowband_rows
from core.training import featurize, fit_pipeline

CONDITIONS = ("clean", "telephone", "gsm", "telephone+line:20", "noise:20+telephone", "noise:20")
VERSIONS = {"emo@2 (per-frame pick)": False, "emo@3 (tracked)": True}


def frames_f0(y: np.ndarray, tracked: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F0 (Hz), voicing strength and active mask per 10 ms frame, as ``emo`` computes them."""
    y = scipy.signal.sosfilt(emo._highpass(), y).astype(np.float32)
    d = emo._frame_descriptors(y / np.abs(y).max(), tracked=tracked)
    energy = d["energy_db"]
    return d["f0"], d["voicing"], energy > energy.max() - emo.ACTIVE_RANGE_DB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ravdess")
    parser.add_argument("--clips", type=int, default=40, help="clips, spread over the set")
    parser.add_argument("--uar", nargs="+", metavar="FEATURES", help="e.g. emo@2 emo@3")
    parser.add_argument("--cache-dir", default="/tmp/aer-cache")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    if args.uar:
        router_uar(args.data, args.uar, args.cache_dir, args.jobs)
    else:
        gross_errors(args.data, args.clips)


def gross_errors(data: str, clips: int) -> None:
    paths = sorted(read_dataset(data).paths)
    paths = paths[5 :: max(1, len(paths) // clips)][:clips]
    rng = np.random.default_rng(0)
    errors = {(v, c): [] for v in VERSIONS for c in CONDITIONS}
    for path in paths:
        y = load(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, ref_voiced, _ = librosa.pyin(
                y, fmin=emo.F0_MIN, fmax=emo.F0_MAX, sr=emo.SAMPLE_RATE, frame_length=1024,
                hop_length=emo.HOP, center=True,
            )  # fmt: skip
        for condition in CONDITIONS:
            x = y if condition == "clean" else parse_degradation(condition)(y, emo.SAMPLE_RATE, rng)
            for version, tracked in VERSIONS.items():
                f0, strength, active = frames_f0(x, tracked)
                n = min(len(ref), len(f0))
                keep = ref_voiced[:n] & (strength[:n] >= emo.VOICING_THRESHOLD) & active[:n]
                errors[(version, condition)].append(12 * np.log2(f0[:n][keep] / ref[:n][keep]))
    print(f"{len(paths)} clips; gross error = more than 2 semitones from pYIN on the clean clip")
    print(f"{'condition':<22}" + "".join(f"{v:>34}" for v in VERSIONS))
    for condition in CONDITIONS:
        cells = []
        for version in VERSIONS:
            st = np.concatenate(errors[(version, condition)])
            cells.append(f"{np.mean(np.abs(st) > 2):.3f} (up {np.mean(st > 2):.3f}, n={st.size})")
        print(f"{condition:<22}" + "".join(f"{c:>34}" for c in cells))


# the shipped aer8 recipe (models/aer8.md): training copies, and the test audio scored here
AUGMENT = (
    "speed:0.9,speed:0.95,speed:1.05,speed:1.1,noise:15,noise:30,pink:15,pink:30,telephone,"
    "speed:0.9+telephone,speed:0.95+telephone,speed:1.05+telephone,speed:1.1+telephone,"
    "noise:15+telephone,noise:30+telephone,pink:15+telephone,pink:30+telephone,"
    "telephone+line:15,telephone+line:30,g721,noise:15+g721,gsm,noise:15+gsm"
).split(",")
TESTS = (
    None, "telephone", "gsm", "g721", "telephone+line:20", "noise:20+telephone", "noise:20+gsm",
    "noise:20", "pink:20",
)  # fmt: skip


def router_uar(data: str, feature_ids: list[str], cache_dir: str, jobs: int) -> None:
    """Per-fold UAR of the aer8 router on each feature set; see the module docstring."""
    dataset = read_dataset(data)
    results = Parallel(n_jobs=min(jobs, len(feature_ids)))(
        delayed(_router_folds)(dataset, fid, cache_dir) for fid in feature_ids
    )
    base = results[0]
    print(f"UAR, mean over 6 speaker folds; d = paired difference against {feature_ids[0]}")
    print(f"{'test audio':<20}" + "".join(f"{fid:>24}" for fid in feature_ids))
    for cond in TESTS:
        cells = []
        for res in results:
            d = res[cond] - base[cond]
            diff = f" d {d.mean():+.3f}±{d.std():.3f}" if res is not base else ""
            cells.append(f"{res[cond].mean():.3f}{diff}")
        print(f"{cond or 'clean':<20}" + "".join(f"{c:>24}" for c in cells))
    for res, fid in zip(results, feature_ids, strict=True):
        loss = res[None] - res["telephone"]
        print(f"{fid}: telephone loss {loss.mean():.3f} ± {loss.std():.3f} (per fold)")


def _router_folds(dataset, feature_id: str, cache_dir: str) -> dict:
    name, version = feature_id.split("@")
    fs = get_feature_set(name, int(version))

    def table(spec):
        return featurize(dataset, fs, cache_dir=cache_dir, n_jobs=1, progress=False, transform=spec)

    clean = table(None)
    copies = [table(spec).X for spec in AUGMENT]
    tests = {spec: table(spec).X for spec in TESTS}
    uar = {spec: [] for spec in TESTS}
    for train, test in splits(clean, "speaker"):
        X = np.vstack([clean.X[train]] + [c[train] for c in copies])
        y = np.tile(clean.labels[train], 1 + len(copies))
        narrow = narrowband_rows(X)
        models = [fit_pipeline("emo-mlp5", X[side], y[side])[0] for side in (~narrow, narrow)]
        for spec, rows in tests.items():
            Xt = rows[test]
            routes = narrowband_rows(Xt)
            pred = np.where(routes, models[1].predict(Xt), models[0].predict(Xt))
            uar[spec].append(balanced_accuracy_score(clean.labels[test], pred))
    return {spec: np.array(v) for spec, v in uar.items()}


if __name__ == "__main__":
    main()
