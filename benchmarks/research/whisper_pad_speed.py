"""How much a short pad costs the Whisper encoder: CPU time of one clip's log-mel + encode,
unpadded against padded to 4-10 s (the signal zero-padded before the log-mel, as
``explore_whisper.py --padding`` pads to 30 s).

Conclusion (2026-12-05, branch ``enc22``, on the shared 2-core machine under load): a 3.3 s
RAVDESS clip costs 40 ms unpadded, 46 / 69 / 97 / 116 ms padded to 4 / 6 / 8 / 10 s (1.15x,
1.7x, 2.4x, 2.9x). ``whisper8`` runs end to end at 134x realtime per core unpadded
(``models/whisper8.md``), two thirds of it in the encoder, so an 8-10 s pad would bring it to
some 55-65x, and VAD segments of 1-3 s would pay the pad's whole cost on less audio. The 100x
target rules the 8-10 s pad out whatever its accuracy; its UAR was therefore not measured.

    python benchmarks/research/whisper_pad_speed.py --data ../shared/data/ravdess
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core.audio import load
from core.features import whisper as w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--pads", type=float, nargs="+", default=[0, 4, 6, 8, 10])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    import ctranslate2

    model = w.encoder()
    y = load(sorted((args.data / "Actor_01").glob("*.flac"))[0], sr=w.SAMPLE_RATE)
    y = y / np.abs(y).max()
    seconds = len(y) / w.SAMPLE_RATE
    for pad in args.pads:
        z = np.pad(y, (0, max(0, int(pad * w.SAMPLE_RATE) - len(y))))

        def once(z: np.ndarray = z) -> None:
            mel = w.log_mel(z)[:, : w.MAX_FRAMES]
            model.encode(ctranslate2.StorageView.from_array(mel[None].copy()))

        once()  # warm up
        start = time.process_time()
        for _ in range(args.repeat):
            once()
        cpu = (time.process_time() - start) / args.repeat
        print(f"pad {pad:g} s: {cpu * 1000:.0f} ms CPU for a {seconds:.2f} s clip, "
              f"{seconds / cpu:.0f}x realtime (log-mel + encoder only)")  # fmt: skip


if __name__ == "__main__":
    main()
