"""Whisper tiny.en encoder statistics for speech emotion (issue "encoder"): which variant.

Finished (benchmarks/research/). Measured 2026-12-04 on the branch that added
``core/features/whisper.py`` (the two parts below ran as two scripts of this code): logistic
regression on clean rows only, StandardScaler, GroupKFold(6) by actor, UAR mean over folds.
Encoder alone (``whisper-tiny@1``) 0.695 / 0.694 / 0.695 at C = 0.02 / 0.05 / 0.1; with
``emo@2`` (``whisper-emo@1``) 0.717 / 0.717 / 0.715: the concatenation and C = 0.05 went into
preset ``whisper-lr-temp`` (``models/whisper8.md``). Padding (``--padding``,
C = 0.05): encoder alone 0.694 unpadded against **0.721** padded to 30 s, with ``emo@2`` 0.717
against **0.741** (+2.4 to +2.7 points), but the padded encoder cost 752 s of wall time on 2
processes for 5300 s of audio on a loaded machine (about 1 s of CPU a clip): some 4x realtime
per core against the target of 100x. Not shipped; a shorter pad (8-10 s) is the untried middle.

``--padding`` also encodes every clip padded to Whisper's 30 s (the log-mel of the zero-padded
signal, as Whisper's own transcription does) and pools only the encoder frames of the signal.

    python benchmarks/research/explore_whisper.py --data ../shared/data/ravdess
    python benchmarks/research/explore_whisper.py --data ../shared/data/ravdess --padding
"""

from __future__ import annotations

import argparse

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from core.audio import load
from core.datasets import read_dataset
from core.features import get_feature_set
from core.training import featurize


def padded_rows(paths: list[str]) -> np.ndarray:
    """whisper-tiny statistics of each clip encoded padded to 30 s, pooled over its frames."""
    import ctranslate2

    from core.features import whisper as w

    model, out = w.encoder(), []
    for p in paths:
        y = load(p, sr=16000)
        y = y / np.abs(y).max()
        n = len(y) // w.HOP
        mel = w.log_mel(np.pad(y, (0, 30 * 16000 - len(y))))[:, : w.MAX_FRAMES]
        h = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel[None].copy())))[0]
        h = h[: (n + 1) // 2]
        out.append(np.concatenate([h.mean(0), h.std(0)]))
    return np.stack(out)


def uar(X: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float) -> tuple[float, float]:
    scores = []
    for tr, te in GroupKFold(6).split(X, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        with threadpool_limits(1):
            model.fit(X[tr], y[tr])
        scores.append(balanced_accuracy_score(y[te], model.predict(X[te])))
    return float(np.mean(scores)), float(np.std(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache-dir", default="/tmp/aer-cache")
    ap.add_argument("--padding", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    ds = read_dataset(args.data)
    fs = get_feature_set("whisper-emo")
    t = featurize(ds, fs, cache_dir=args.cache_dir, n_jobs=args.jobs, progress=False)
    y, g = t.labels.astype(str), t.speakers.astype(str)
    variants = {"whisper-tiny": t.X[:, :768], "whisper-emo": t.X}
    if args.padding:
        paths = [str(p) for p in t.paths]
        k = args.jobs
        parts = Parallel(n_jobs=k)(delayed(padded_rows)(paths[i::k]) for i in range(k))
        P = np.empty((len(paths), 768), np.float32)
        for i, part in enumerate(parts):
            P[i::k] = part
        variants = {**variants, "padded": P, "padded+emo": np.hstack([P, t.X[:, 768:]])}
    for name, X in variants.items():
        for C in (0.02, 0.05, 0.1) if not args.padding else (0.05,):
            mean, std = uar(X, y, g, C)
            print(f"{name:<14} C={C:<5} UAR {mean:.3f} ± {std:.3f}", flush=True)


if __name__ == "__main__":
    main()
