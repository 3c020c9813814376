"""Throughput of the seed's feature extraction against ``seed180@1``, one core, same files.

Each side decodes the FLAC its own way and extracts; the clock covers both. The seed decodes
with soundfile (libsndfile), as it is written; AER with ``core.audio.load``, the loader the
service uses (dr_flac for short FLAC files, same samples, plus AER's checks for damaged, silent
or non-finite audio). With ``--decoded`` the clips are decoded once with soundfile before the
clock starts, so the clock covers the features alone.
Threads are pinned to one (env vars set before numpy loads, plus threadpoolctl), so "x realtime"
is per core.

    python benchmarks/bench_features.py                      # 200 clips of ../shared/data/ravdess
    python benchmarks/bench_features.py --decoded            # features only, same clips
    python benchmarks/bench_features.py --stages             # ms per clip of each stage of ours
    python benchmarks/bench_features.py --n 50 --rounds 1 --data /path/to/ravdess
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import miniaudio  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.audio import TARGET_SR, load  # noqa: E402
from core.features import get_feature_set, seed, spectral  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ravdess"


def decode(file_name) -> tuple[np.ndarray, int]:
    """The seed's decoding: soundfile, float32, stereo mixed down."""
    with soundfile.SoundFile(file_name) as sound_file:
        X = sound_file.read(dtype="float32")
        return (X.mean(axis=1) if X.ndim == 2 else X), sound_file.samplerate


def seed_extract_feature(file_name, mfcc=True, chroma=True, mel=True):
    """The seed's function, adapted only to librosa's keyword arguments and stereo mixdown."""
    return seed_features(*decode(file_name), mfcc=mfcc, chroma=chroma, mel=mel)


def seed_features(X, sample_rate, mfcc=True, chroma=True, mel=True):
    """The body of the seed's ``extract_feature`` after decoding, as the seed writes it."""
    if chroma:
        stft = np.abs(librosa.stft(X))
    result = np.array([])
    if mfcc:
        mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sample_rate, n_mfcc=40).T, axis=0)
        result = np.hstack((result, mfccs))
    if chroma:
        chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
        result = np.hstack((result, chroma))
    if mel:
        mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sample_rate).T, axis=0)
        result = np.hstack((result, mel))
    return result


def ours_extract_feature(file_name):
    """Decode with AER's loader and extract ``seed180@1``."""
    return ours_features(load(file_name), TARGET_SR)


def ours_features(X, sample_rate):
    """``seed180@1`` of a decoded signal."""
    return get_feature_set("seed180", 1)(X, sample_rate)


def sample_files(data: Path, n: int, seed: int) -> list[Path]:
    files = sorted(data.rglob("*.flac"))
    if not files:
        raise SystemExit(f"no .flac files under {data}")
    return sorted(random.Random(seed).sample(files, min(n, len(files))))


def timed(fn, inputs) -> tuple[float, float, int, list[np.ndarray]]:
    """(cpu seconds, wall seconds, minor page faults, outputs) of ``fn`` over ``inputs``."""
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out = [fn(x) for x in inputs]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu, wall, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=200, help="number of clips (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="file sampling seed")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best is kept")
    parser.add_argument("--decoded", action="store_true", help="time the features only")
    parser.add_argument("--stages", action="store_true", help="ms per clip of each of our stages")
    args = parser.parse_args(argv)
    if args.stages:
        with threadpool_limits(1):
            report_stages(sample_files(args.data, args.n, args.seed), args.rounds)
        return

    files = sample_files(args.data, args.n, args.seed)
    audio_s = sum(soundfile.info(f).duration for f in files)
    warnings.simplefilter("ignore")  # librosa's empty-tuning warning on the seed side
    if args.decoded:
        inputs = [decode(f) for f in files]
        sides = (("seed", lambda a: seed_features(*a)), ("ours", lambda a: ours_features(*a)))
    else:
        inputs = files
        sides = (("seed", seed_extract_feature), ("ours", ours_extract_feature))
    with threadpool_limits(1):
        for _, fn in sides:
            fn(inputs[0])  # JIT / cache warm-up
        best = {"seed": (np.inf, np.inf, 0), "ours": (np.inf, np.inf, 0)}
        outputs: dict[str, list[np.ndarray]] = {}
        for _ in range(args.rounds):
            for name, fn in sides:
                cpu, wall, faults, out = timed(fn, inputs)
                best[name] = min(best[name], (cpu, wall, faults))
                outputs[name] = out

    what = "features only (decoded beforehand)" if args.decoded else "decoding + features"
    print(f"{len(files)} files, {audio_s:.1f} s of audio, {what}, 1 thread, "
          f"best of {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    # minor page faults per clip: fresh pages the allocator mapped (in the best round)
    print(f"{'':6s} {'cpu s':>8s} {'wall s':>8s} {'x rt (cpu)':>11s} {'x rt (wall)':>12s} "
          f"{'faults/clip':>12s}")  # fmt: skip
    for name, (cpu, wall, faults) in best.items():
        print(f"{name:6s} {cpu:8.3f} {wall:8.3f} {audio_s / cpu:11.0f} {audio_s / wall:12.0f} "
              f"{faults / len(files):12.1f}")  # fmt: skip
    print(
        f"speed-up: {best['seed'][0] / best['ours'][0]:.1f}x (cpu), "
        f"{best['seed'][1] / best['ours'][1]:.1f}x (wall)"
    )
    report_agreement(outputs["seed"], outputs["ours"])


def report_stages(files: list[Path], rounds: int) -> None:
    """CPU milliseconds per clip of each stage of our side (best of ``rounds``).

    Each stage's inputs are made just before it and dropped after it, and its outputs dropped as
    they come: holding hundreds of spectrograms at once changes how the allocator serves the
    stages' own buffers (fresh pages cost as much as the FFT) and slows every stage timed while
    they are alive.
    """
    signals = [load(f) for f in files]

    def spectra():
        return [spectral.spectrogram_pass(y, TARGET_SR, seed.N_MELS) for y in signals]

    stages = {
        "decode: soundfile (the seed's)": (decode, lambda: files),
        "decode: dr_flac alone (miniaudio)": (_dr_flac, lambda: files),
        "decode: core.audio.load (dr_flac + checks)": (load, lambda: files),
        "STFT (window + FFT), block by block": (_drain_stft, lambda: signals),
        "spectrogram_pass (STFT + compiled pass + tuning)": (
            lambda y: spectral.spectrogram_pass(y, TARGET_SR, seed.N_MELS), lambda: signals),
        "  tuning estimate alone": (lambda pk: spectral._tuning(*pk), lambda: _peaks(signals)),
        "chroma": (lambda sp: spectral.chroma_mean(sp.mag, TARGET_SR, sp.tuning), spectra),
        "MFCC": (lambda sp: spectral.dct_matrix(seed.N_MELS, seed.N_MFCC)
                 @ spectral.power_to_db(sp.mel).mean(axis=1), spectra),
        "seed180@1 features (all of the above but decoding)": (
            lambda y: ours_features(y, TARGET_SR), lambda: signals),
    }  # fmt: skip
    print(f"{len(files)} files, 1 thread, best of {rounds} rounds, CPU ms per clip, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for name, (fn, make_inputs) in stages.items():
        inputs = make_inputs()
        fn(inputs[0])
        best = min(_cpu_seconds(fn, inputs) for _ in range(rounds))
        del inputs
        print(f"{name:52s} {1e3 * best / len(files):6.3f}")


def _dr_flac(path: Path) -> np.ndarray:
    """A FLAC file decoded by dr_flac, as ``core.audio.load`` does for short files."""
    return np.frombuffer(miniaudio.flac_read_file_f32(str(path)).samples, np.float32)


def _drain_stft(y: np.ndarray) -> None:
    """Compute the STFT of ``y`` block by block, dropping each block (as the features do)."""
    for _ in spectral.stft_blocks(y):
        pass


def _cpu_seconds(fn, inputs) -> float:
    """CPU seconds of ``fn`` over ``inputs``, each output dropped at once (see above)."""
    start = time.process_time()
    for x in inputs:
        fn(x)
    return time.process_time() - start


def _peaks(signals: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (pitch, strength) peak lists ``spectrogram_pass`` hands to its tuning estimate."""
    caught, original = [], spectral._tuning
    spectral._tuning = lambda p, s: caught.append((p.copy(), s.copy())) or original(p, s)
    try:
        for y in signals:
            spectral.spectrogram_pass(y, TARGET_SR, seed.N_MELS)
    finally:
        spectral._tuning = original
    return caught


def report_agreement(seed_rows: list[np.ndarray], our_rows: list[np.ndarray]) -> None:
    """Largest relative differences per block (relative to the block's largest magnitude)."""
    seed, ours = np.array(seed_rows), np.array(our_rows, dtype=np.float64)
    blocks = {"mfcc": slice(0, 40), "chroma": slice(40, 52), "mel": slice(52, 180)}
    for name, sl in blocks.items():
        scale = np.abs(seed[:, sl]).max(axis=1, keepdims=True)
        rel = np.abs(ours[:, sl] - seed[:, sl]) / scale
        worst = rel.max(axis=1)
        print(f"{name:6s} max rel diff {worst.max():.1e}; files > 1e-4: {(worst > 1e-4).sum()}")
    within = np.ones(len(seed), bool)
    for sl in blocks.values():
        scale = np.abs(seed[:, sl]).max(axis=1, keepdims=True)
        within &= (np.abs(ours[:, sl] - seed[:, sl]) <= 1e-4 * scale).all(axis=1)
    print(f"all blocks within 1e-4 of their scale: {within.sum()}/{len(within)} files "
          "(the rest: chroma after a tuning-histogram near-tie; see seed_parity.py)")  # fmt: skip


if __name__ == "__main__":
    main()
