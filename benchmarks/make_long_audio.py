"""Build long benchmark recordings from RAVDESS clips, with a JSON ground truth each.

(a) ``long_48k_mono.flac``: 48 kHz mono, clips one after another (a monologue).
(b) ``long_8k_stereo.wav``: 8 kHz stereo 16-bit telephone audio (300-3400 Hz, G.711 mu-law),
    clips alternating between channel 0 (agent) and channel 1 (customer) like a conversation.

Each clip loses its leading and trailing silence (frames 40 dB below its loudest), is brought
to an active speech level of -26 dBFS +- 3 dB (as a call recorder's gain control would), and is
followed by a pause of 0.5-2 s drawn at random; a -60 dBFS noise floor runs under everything.
Files are written clip by clip, so memory stays small whatever the duration.

The ground truth ``<file>.json`` lists every clip as ``{channel, start_s, end_s, label, clip}``:
the span of its speech in the long file, i.e. of frames within 30 dB of its loudest. (At 40 dB,
quiet clips would count their own background hiss and breaths as speech.)

    python benchmarks/make_long_audio.py --out /tmp/aer-long             # 60 + 120 minutes
    python benchmarks/make_long_audio.py --out /tmp/aer-long-small --mono-minutes 2 \\
        --stereo-minutes 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.datasets import parse_ravdess_name  # noqa: E402
from core.degrade import active_power, telephone  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ravdess"
NOISE_DBFS = -60.0
LEVEL_DBFS = (-29.0, -23.0)
TRIM_DB = 40.0  # silence cut from the clips
SPEECH_DB = 30.0  # ground truth: speech frames within this of the loudest
PAUSE_S = (0.5, 2.0)


def clip_audio(
    path: Path, sr: int, *, phone: bool, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """The clip without its silence, levelled, at ``sr`` (through a phone line if ``phone``),
    and the first and last sample of its speech as heard in that audio."""
    y, clip_sr = sf.read(path, dtype="float32")
    y, _ = librosa.effects.trim(y, top_db=TRIM_DB, frame_length=512, hop_length=128)
    gain_db = rng.uniform(*LEVEL_DBFS) - 10 * np.log10(active_power(y, clip_sr))
    y = y * np.float32(10 ** (gain_db / 20))
    if clip_sr != sr:
        y = soxr.resample(y, clip_sr, sr, quality="HQ")
    y = telephone(y, sr) if phone else y
    frame, hop = sr // 32, sr // 125  # 31 ms frames every 8 ms
    _, (start, end) = librosa.effects.trim(y, top_db=SPEECH_DB, frame_length=frame, hop_length=hop)
    return y, int(start), int(end)


def build(
    out: Path,
    clips: list[Path],
    *,
    minutes: float,
    sr: int,
    channels: int,
    rng: np.random.Generator,
    subtype: str,
) -> dict:
    """Write ``out`` (clip by clip) and return its ground truth."""
    truth, written = [], 0
    limit = int(minutes * 60 * sr)
    noise = 10 ** (NOISE_DBFS / 20)
    with sf.SoundFile(out, "w", samplerate=sr, channels=channels, subtype=subtype) as f:
        turn = 0
        while written < limit:
            clip = clips[rng.integers(len(clips))]
            audio, start, end = clip_audio(clip, sr, phone=sr == 8000, rng=rng)
            pause = int(rng.uniform(*PAUSE_S) * sr)
            n = min(pause + audio.size, limit - written)
            block = noise * rng.standard_normal((n, channels)).astype(np.float32)
            channel = turn % channels
            if n == pause + audio.size:  # the last clip is left out when it does not fit
                block[pause:, channel] += audio
                truth.append(
                    {
                        "channel": channel,
                        "start_s": (written + pause + start) / sr,
                        "end_s": (written + pause + end) / sr,
                        "label": parse_ravdess_name(clip).emotion,
                        "clip": str(clip),
                    }
                )
            f.write(np.clip(block, -1.0, 1.0))
            written += n
            turn += 1
    meta = {"path": str(out), "sample_rate": sr, "channels": channels, "clips": truth}
    meta["duration_s"] = written / sr
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="RAVDESS folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/aer-long"), help="output folder")
    parser.add_argument("--mono-minutes", type=float, default=60.0, help="0 to skip (a)")
    parser.add_argument("--stereo-minutes", type=float, default=120.0, help="0 to skip (b)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clips = sorted(args.data.rglob("*.flac"))
    if not clips:
        parser.error(f"no .flac clips under {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    jobs = [
        ("long_48k_mono.flac", args.mono_minutes, 48_000, 1, "PCM_16"),
        ("long_8k_stereo.wav", args.stereo_minutes, 8_000, 2, "PCM_16"),
    ]
    for name, minutes, sr, channels, subtype in jobs:
        if minutes > 0:
            meta = build(
                args.out / name,
                clips,
                minutes=minutes,
                sr=sr,
                channels=channels,
                rng=rng,
                subtype=subtype,
            )
            print(f"{meta['path']}: {meta['duration_s']:.0f} s, {len(meta['clips'])} clips")


if __name__ == "__main__":
    main()
