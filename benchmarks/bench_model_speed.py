"""Per-core throughput of decode + features + classifier, one file at a time, as in serving.

Fits the classifier on the cached features of all RAVDESS clips (speed only: no accuracy is
claimed here), then times ``soundfile`` decode + ``FeatureSet`` + ``predict_proba`` per file on
one thread.

    python benchmarks/bench_model_speed.py --features emo --classifier mlp5 --n 200
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_features import sample_files  # noqa: E402
from explore_accuracy import CLASSIFIERS, DEFAULT_DATA, features  # noqa: E402

from core.datasets import read_ravdess  # noqa: E402
from core.features import get_feature_set  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--features", default="emo")
    parser.add_argument("--classifier", default="mlp5", choices=sorted(CLASSIFIERS))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    fs = get_feature_set(args.features)
    data = read_ravdess(args.data)
    model = CLASSIFIERS[args.classifier][0]().fit(features(fs, data.paths, 2), data.labels)
    files = sample_files(args.data, args.n, 0)
    audio_s = sum(soundfile.info(f).duration for f in files)

    score = getattr(model, "predict_proba", model.predict)

    def one(path: Path) -> None:
        y, sr = soundfile.read(path, dtype="float32")
        score(fs(y, sr)[None, :])

    best = {"features": np.inf, "features+classifier": np.inf}
    with threadpool_limits(1):
        one(files[0])
        for _ in range(args.rounds):
            t0 = time.process_time()
            for f in files:
                y, sr = soundfile.read(f, dtype="float32")
                fs(y, sr)
            best["features"] = min(best["features"], time.process_time() - t0)
            t0 = time.process_time()
            for f in files:
                one(f)
            best["features+classifier"] = min(best["features+classifier"], time.process_time() - t0)
    print(f"{fs.id} + {args.classifier}: {len(files)} files, {audio_s:.1f} s audio, 1 thread")
    for name, cpu in best.items():
        print(f"  decode+{name:22s} {cpu:6.3f} cpu s  {audio_s / cpu:6.0f}x realtime per core")


if __name__ == "__main__":
    main()
