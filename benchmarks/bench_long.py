"""Long-recording benchmark: memory, speed and segmentation quality of ``core.analyze``.

Runs :func:`core.analyze.analyze_file` on the files of ``make_long_audio.py`` the way the worker
will (streamed blocks -> VAD per channel -> features per segment -> one batched classification),
each file in its own subprocess with every thread pool pinned to one thread, and prints:

- peak RSS of that process (``ru_maxrss``, MB), also after imports + model load and after a
  warm-up extraction (librosa's lazy imports, numba JIT), before the file;
- x realtime: audio seconds / wall seconds (one core);
- boundaries: share of ground-truth speech starts and ends with a segment start (end) of the
  same channel within 0.3 s;
- agreement: share of segments whose label equals the label of the clip they overlap most
  (only with a model), and next to it what the model's per-clip accuracy predicts for it: the
  share of clips classified right when each is cut from the same file at its true boundaries
  (same channel, same audio) and classified whole;
- coverage: share of clips overlapped by a segment; precision: share of segment time on speech.

Uses the registry's default model (``models/``); with ``--features-only`` or when there is none,
a stand-in with uniform probabilities measures decoding, VAD and features alone.

    python benchmarks/make_long_audio.py --out /tmp/aer-long
    python benchmarks/bench_long.py --dir /tmp/aer-long
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FILES = {"long_48k_mono.flac": "mix", "long_8k_stereo.wav": "split"}
TOLERANCE_S = 0.3


class FeaturesOnly:
    """Stand-in model: real features, uniform probabilities (no classifier cost)."""

    name, version = "features-only", "-"

    def __init__(self) -> None:
        from core.datasets import EMOTIONS
        from core.features import get_feature_set

        self.labels = EMOTIONS
        self.feature_set = get_feature_set("seed180")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), len(self.labels)), 1.0 / len(self.labels))


def load_model(name: str, features_only: bool):
    from core.errors import ModelError
    from core.registry import ModelRegistry

    if features_only:
        return FeaturesOnly()
    try:
        return ModelRegistry().load(name)
    except ModelError as exc:
        print(f"no model {name!r} ({exc}): measuring VAD + features only", file=sys.stderr)
        return FeaturesOnly()


def score(segments, clips: list[dict], *, with_labels: bool) -> dict:
    """Boundary recall, label agreement, clip coverage and speech precision against the truth."""
    from core.timeline import most_overlapped

    found, covered, on_speech = [], 0, 0.0
    for ch in sorted({c["channel"] for c in clips}):
        segs = [s for s in segments if s.channel == ch]
        truth = [c for c in clips if c["channel"] == ch]
        starts = np.array([s.start_s for s in segs] or [np.inf])
        ends = np.array([s.end_s for s in segs] or [np.inf])
        for c in truth:
            found.append(np.min(np.abs(starts - c["start_s"])) <= TOLERANCE_S)
            found.append(np.min(np.abs(ends - c["end_s"])) <= TOLERANCE_S)
            covered += bool(np.any((starts < c["end_s"]) & (ends > c["start_s"])))
        t_starts = np.array([c["start_s"] for c in truth])
        t_ends = np.array([c["end_s"] for c in truth])
        for s in segs:
            overlap = np.minimum(t_ends, s.end_s) - np.maximum(t_starts, s.start_s)
            on_speech += overlap.clip(0, None).sum()
    agree = []
    if with_labels:
        sources = most_overlapped(
            [(s.channel, s.start_s, s.end_s) for s in segments],
            [(c["channel"], c["start_s"], c["end_s"]) for c in clips],
        )
        agree = [
            s.label == clips[i]["label"]
            for s, i in zip(segments, sources, strict=True)
            if i is not None
        ]
    seg_time = sum(s.end_s - s.start_s for s in segments)
    return {
        "boundaries_within_0.3s": float(np.mean(found)),
        "label_agreement": float(np.mean(agree)) if agree else None,
        "clip_coverage": covered / len(clips),
        "speech_precision": on_speech / seg_time if seg_time else None,
    }


def per_clip_accuracy(model, path: Path, clips: list[dict], channels: str) -> float:
    """Share of ``clips`` the model labels right when each is cut from ``path`` at its true
    span (its own channel with ``split``, the mix otherwise) and classified whole."""
    import soundfile as sf
    import soxr

    fs = model.feature_set
    right = 0
    with sf.SoundFile(path) as f:
        for c in clips:
            f.seek(int(c["start_s"] * f.samplerate))
            block = f.read(int((c["end_s"] - c["start_s"]) * f.samplerate), dtype="float32")
            block = block.reshape(len(block), -1)
            y = block[:, c["channel"]] if channels == "split" else block.mean(axis=1)
            y = soxr.resample(y, f.samplerate, fs.sample_rate).astype(np.float32)
            proba = model.predict_proba(fs(y, fs.sample_rate)[None])[0]
            right += model.labels[int(np.argmax(proba))] == c["label"]
    return right / len(clips)


def run_one(path: Path, channels: str, model_name: str, features_only: bool, block_s: float):
    """Analyse one file in this process; return the measurements."""
    from threadpoolctl import threadpool_limits

    from core.analyze import analyze_file

    model = load_model(model_name, features_only)
    truth = json.loads(path.with_suffix(".json").read_text())
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Warm up once, as a long-running worker would be: librosa's lazy imports and numba JIT.
    fs = model.feature_set
    tone = np.sin(np.arange(3 * fs.sample_rate) * 0.05).astype(np.float32)
    model.predict_proba(fs(tone, fs.sample_rate)[None])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with threadpool_limits(1):
        t0 = time.perf_counter()
        result = analyze_file(model, path, channels=channels, block_s=block_s)
        wall = time.perf_counter() - t0
    if result.error:
        raise SystemExit(f"{path}: {result.error}")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    expected = None
    if not features_only:
        with threadpool_limits(1):
            expected = per_clip_accuracy(model, path, truth["clips"], channels)
    return {
        "file": path.name,
        "model": f"{model.name}@{model.version}",
        "channels": channels,
        "audio_s": truth["duration_s"],
        "wall_s": wall,
        "x_realtime": truth["duration_s"] / wall,
        "peak_rss_mb": peak_rss,
        "rss_loaded_mb": rss_loaded,
        "rss_before_mb": rss_before,
        "segments": len(result.segments),
        "clips": len(truth["clips"]),
        **score(result.segments, truth["clips"], with_labels=not features_only),
        "per_clip_accuracy": expected,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/aer-long"))
    parser.add_argument("--model", default="default", help="registry name (models/)")
    parser.add_argument("--features-only", action="store_true")
    parser.add_argument("--block-s", type=float, default=30.0)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--channels", default="mix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        features_only = args.features_only
        out = run_one(args.one, args.channels, args.model, features_only, args.block_s)
        print(json.dumps(out))
        return
    for name, channels in FILES.items():
        path = args.dir / name
        if not path.exists():
            print(f"{path} missing: run benchmarks/make_long_audio.py first", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--one", str(path), "--channels", channels]
        cmd += ["--model", args.model, "--block-s", str(args.block_s)]
        cmd += ["--features-only"] if args.features_only else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr)
        sys.stderr.write(done.stderr)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        agreement = "-"
        if m["label_agreement"] is not None:
            agreement = f"{m['label_agreement']:.1%} (per clip {m['per_clip_accuracy']:.1%})"
        print(
            f"{m['file']} ({m['channels']}, {m['audio_s'] / 60:.0f} min, {m['model']}): "
            f"peak RSS {m['peak_rss_mb']:.0f} MB (imports+model {m['rss_loaded_mb']:.0f} MB, "
            f"after warm-up {m['rss_before_mb']:.0f} MB), "
            f"{m['x_realtime']:.0f}x realtime ({m['wall_s']:.1f} s), "
            f"boundaries {m['boundaries_within_0.3s']:.1%}, agreement {agreement}, "
            f"coverage {m['clip_coverage']:.1%}, precision {m['speech_precision']:.1%}, "
            f"{m['segments']} segments / {m['clips']} clips"
        )


if __name__ == "__main__":
    main()
