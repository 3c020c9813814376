"""The ``ood`` score of a model on N-second cuts from the middle of clips: short segments.

Models trained on whole clips see statistics of 3-4 s of speech; segment analysis feeds them
1-8 s cuts. Prints, per cut length, the median ``ood`` and the share above the model's
``suggested_ood_above``, for every 6th clip of the first actors.

    python benchmarks/ood_segments.py --model whisper8 --data ../shared/data/ravdess
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.audio import load
from core.registry import DEFAULT_MODELS_DIR, ModelRegistry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whisper8")
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--actors", type=int, default=4)
    ap.add_argument("--lengths", type=float, nargs="+", default=[1.0, 2.0, 3.0, 0.0])
    args = ap.parse_args()
    model = ModelRegistry(args.models_dir).load(args.model)
    if model.ood is None:
        raise SystemExit(f"{args.model} has no distance scorer")
    files = sorted(f for a in range(1, args.actors + 1)
                   for f in (args.data / f"Actor_{a:02d}").glob("*.flac"))[::6]  # fmt: skip
    fs = model.feature_set
    clips = [load(f, sr=fs.sample_rate) for f in files]
    print(f"{model.name} {model.version}: {len(clips)} clips, ood_above {model.ood_above}")
    for length in args.lengths:
        n = int(length * fs.sample_rate)
        cut = [y[max(0, (len(y) - n) // 2) :][:n] if length else y for y in clips]
        ood = model.ood_score(fs.extract_many(cut, fs.sample_rate))
        name = f"middle {length:g} s" if length else "whole clip"
        print(f"  {name:<12} median ood {np.median(ood):.3f}, "
              f"above ood_above {np.mean(ood > model.ood_above):.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
