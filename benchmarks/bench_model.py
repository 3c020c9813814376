"""Per-core throughput of a SHIPPED model: decode + features + classifier, one file at a time.

Loads a model from the registry (as the service does) and times, on one thread with CPU time
(``time.process_time``, so other load on the machine does not count), for each of ``--n`` clips:
``soundfile`` decode, ``model.feature_set``, ``model.predict_proba`` and ``model.ood_score``
(where the model has a distance scorer). Reports x-realtime per core = seconds of audio / CPU
seconds (the encoder's thread of the whisper feature sets included), best of ``--rounds``.
Several models are timed one after the other on the same clips.

    python benchmarks/bench_model.py --model aer8 whisper8 --n 100
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import soundfile  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from core.registry import DEFAULT_MODELS_DIR, ModelRegistry  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["default"])
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    files = sorted(args.data.rglob("*.flac"))
    files = sorted(random.Random(0).sample(files, min(args.n, len(files))))
    clips = [soundfile.read(f, dtype="float32") for f in files]
    audio_s = sum(len(y) / sr for y, sr in clips)
    print(f"{len(files)} files, {audio_s:.1f} s audio, 1 thread, best of {args.rounds}")
    for name in args.model:
        _bench(ModelRegistry(args.models_dir).load(name), files, clips, audio_s, args.rounds)


def _bench(model, files, clips, audio_s: float, rounds: int) -> None:
    rows = [model.feature_set(y, sr) for y, sr in clips]

    def cpu(fn) -> float:
        best = float("inf")
        for _ in range(rounds):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        return best

    def classify(row):
        model.ood_score(row)
        return model.predict_proba(row)

    with threadpool_limits(1):
        timings = {
            "classifier+ood only": cpu(lambda: [classify(r) for r in rows]),
            "features only": cpu(lambda: [model.feature_set(y, sr) for y, sr in clips]),
            "decode+features+classifier": cpu(
                lambda: [
                    classify(model.feature_set(*soundfile.read(f, dtype="float32")))
                    for f in files
                ]
            ),
        }
    print(f"{model.name} {model.version} ({model.feature_set.id}, {model.metadata.get('preset')})")
    for name, seconds in timings.items():
        print(f"  {name:28s} {seconds:7.3f} cpu s  {audio_s / seconds:7.0f}x realtime per core")

if __name__ == "__main__":
    main()
