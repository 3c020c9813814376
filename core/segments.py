"""Speech segmentation: voice activity detection (webrtcvad) and fixed windows.

Long recordings are cut into utterance-sized segments, because the models were trained on 3-4 s
clips. Both segmenters exist in two forms that give identical results: a whole-signal function
(:func:`detect_speech`, :func:`fixed_windows`) and a streaming object (:class:`SpeechStream`,
:class:`WindowStream`) fed block by block, whose memory does not grow with the file length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import webrtcvad

VAD_RATES = (8_000, 16_000, 32_000, 48_000)
VAD_FRAME_MS = (10, 20, 30)
_OPEN_RUN_LIMIT = 4  # in max_segment_s: longer open runs are cut before they end


@dataclass(frozen=True)
class Segment:
    """A span of a recording, in seconds from its start."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _even_split(start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    """Cut [start, end) into the fewest equal pieces no longer than ``max_len`` samples."""
    k = max(1, math.ceil((end - start) / max_len))
    edges = [start + round(i * (end - start) / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


class SpeechStream:
    """Streaming voice activity detector for one mono channel.

    Feed float32 blocks of any length with :meth:`push`, then call :meth:`flush` once at the end;
    both return the segments completed so far, in order, with times from the start of the stream.
    The result does not depend on how the signal is cut into blocks.

    How decisions become segments: webrtcvad labels each frame voiced or not; speech starts once
    frames have been voiced for ``onset_s`` in a row (clicks and breaths are ignored); pauses
    shorter than ``min_silence_s`` are bridged (the hangover); runs with less than
    ``min_speech_s`` of speech are dropped; each run starts ``pad_s`` early and ends ``end_pad_s``
    late (webrtcvad already holds speech about 0.15 s past its end, hence no end padding by
    default: measured on benchmarks/bench_long.py, it moved ends out of the 0.3 s tolerance), then
    widened around its centre to ``min_segment_s`` if still shorter (the model needs context),
    never into the previous segment; runs longer than ``max_segment_s`` are split into equal
    pieces. A run still open after ``4 * max_segment_s`` gives up its first ``max_segment_s``
    at once, so that memory and latency stay bounded in endless speech.

    Args:
        sr: sample rate, one of 8000, 16000, 32000, 48000 Hz.
        aggressiveness: webrtcvad mode, 0 (keeps most) to 3 (drops most non-speech).
        frame_ms: VAD frame length, 10, 20 or 30 ms.
        min_segment_s, max_segment_s, min_silence_s, min_speech_s, pad_s, end_pad_s, onset_s:
            see above,
            in seconds.

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        sr: int,
        *,
        aggressiveness: int = 2,
        frame_ms: int = 30,
        min_segment_s: float = 1.0,
        max_segment_s: float = 8.0,
        min_silence_s: float = 0.3,
        min_speech_s: float = 0.5,
        pad_s: float = 0.1,
        end_pad_s: float = 0.0,
        onset_s: float = 0.09,
    ) -> None:
        if sr not in VAD_RATES:
            raise ValueError(f"VAD needs a sample rate in {VAD_RATES}, got {sr}")
        if frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}, got {frame_ms}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
        if not 0 <= min_segment_s <= max_segment_s or max_segment_s <= 0:
            raise ValueError("need 0 <= min_segment_s <= max_segment_s and max_segment_s > 0")
        if min(min_silence_s, min_speech_s, pad_s, end_pad_s, onset_s) < 0:
            raise ValueError("silence, speech, padding and onset lengths must not be negative")
        self.sr = sr
        self._vad = webrtcvad.Vad(aggressiveness)
        self._n = sr * frame_ms // 1000
        self._min_seg = round(min_segment_s * sr)
        self._max_seg = max(1, int(max_segment_s * sr))  # floor: pieces never exceed it
        self._min_sil = round(min_silence_s * sr)
        self._min_speech = round(min_speech_s * sr)
        self._pad = round(pad_s * sr)
        self._end_pad = round(end_pad_s * sr)
        self._onset = max(1, round(onset_s * sr))
        self._tail = np.zeros(0, dtype=np.int16)  # samples not yet in a whole frame
        self._pos = 0  # samples consumed as whole frames
        self._streak: int | None = None  # start of the current run of voiced frames
        self._open: list[int] | None = None  # [start, end, pieces given out] of the open run
        self._pending: list[tuple[int, int]] = []  # closed runs waiting for their end padding
        self._last_end = 0  # end of the last segment given out
        self._done = False

    @property
    def settled_s(self) -> float:
        """No segment returned from now on starts before this time (in seconds)."""
        starts = [head for head, _ in self._pending]
        for at in (self._pos, self._streak, self._open[0] if self._open else None):
            if at is not None:
                # A short run is widened backwards by up to half of min_segment_s.
                starts.append(max(at - self._pad - self._min_seg // 2, self._last_end))
        return min(starts) / self.sr

    def push(self, y: np.ndarray) -> list[Segment]:
        """Feed the next mono float32 block [shape=(n,)]; return the segments it completed."""
        if self._done:
            raise RuntimeError("push() after flush()")
        pcm = (np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        pcm = np.concatenate([self._tail, pcm])
        n_frames = pcm.size // self._n
        raw = pcm[: n_frames * self._n].tobytes()
        self._tail = pcm[n_frames * self._n :]
        width = 2 * self._n
        for k in range(n_frames):
            voiced = self._vad.is_speech(raw[k * width : (k + 1) * width], self.sr)
            self._step(voiced)
        return self._release(final=False)

    def flush(self) -> list[Segment]:
        """End of stream: close any open run and return the remaining segments."""
        if not self._done:
            self._pos += self._tail.size  # a partial frame counts as silence
            self._tail = self._tail[:0]
            self._close()
            self._done = True
        return self._release(final=True)

    def _step(self, voiced: bool) -> None:
        start, self._pos = self._pos, self._pos + self._n
        if voiced:
            self._streak = start if self._streak is None else self._streak
            if self._pos - self._streak >= self._onset:
                self._extend(self._streak, self._pos)
        else:
            self._streak = None
        run = self._open
        if run is None:
            return
        streak_far = self._streak is None or self._streak - run[1] >= self._min_sil
        head = max(run[0] - self._pad, self._last_end)
        if streak_far and self._pos - run[1] >= self._min_sil:
            self._close()
        elif run[1] - head >= _OPEN_RUN_LIMIT * self._max_seg:  # endless speech: cut it
            self._pending.append((head, head + self._max_seg))
            run[0] = self._last_end = head + self._max_seg
            run[2] += 1

    def _extend(self, start: int, end: int) -> None:
        if self._open is not None and start - self._open[1] < self._min_sil:
            self._open[1] = end
            return
        self._close()
        self._open = [start, end, 0]

    def _close(self) -> None:
        if self._open is None:
            return
        start, end, cut = self._open
        self._open = None
        if end - start < self._min_speech and not cut:
            return
        head = max(start - self._pad, self._last_end)
        tail = end + self._end_pad
        if tail - head < self._min_seg and not cut:
            head = max(head - (self._min_seg - tail + head) // 2, self._last_end, 0)
            tail = head + self._min_seg
        self._pending.append((head, tail))  # cut at the end of the stream by _release
        self._last_end = tail

    def _release(self, *, final: bool) -> list[Segment]:
        out: list[Segment] = []
        while self._pending and (final or self._pending[0][1] <= self._pos):
            head, tail = self._pending.pop(0)
            for a, b in _even_split(head, min(tail, self._pos), self._max_seg):
                out.append(Segment(a / self.sr, b / self.sr))
        return out


def detect_speech(y: np.ndarray, sr: int, **params) -> list[Segment]:
    """Speech segments of a whole signal; ``params`` are the keywords of :class:`SpeechStream`
    (aggressiveness, min/max segment length, padding, ...), with the same defaults.

    Args:
        y: mono float32 signal [shape=(n,)] in [-1, 1], at ``sr`` = 8, 16, 32 or 48 kHz.

    Returns:
        Segments in time order, not overlapping, in seconds from the start of ``y``.

    Raises:
        ValueError: unsupported ``sr`` or a parameter out of range.
        TypeError: an unknown keyword.
    """
    stream = SpeechStream(sr, **params)
    return stream.push(y) + stream.flush()


def detect_speech_blocks(blocks: Iterable[np.ndarray], sr: int, **kwargs) -> Iterator[Segment]:
    """Speech segments of a stream of mono blocks (e.g. ``core.audio.iter_blocks``), lazily.

    Keywords as for :func:`detect_speech`, and the same result as on the joined blocks. Times are
    absolute (from the start of the stream); memory stays bounded whatever the length.
    """
    stream = SpeechStream(sr, **kwargs)
    for block in blocks:
        yield from stream.push(block)
    yield from stream.flush()


def _windows_from(
    k: int, duration_s: float, window_s: float, hop_s: float, min_window_s: float
) -> list[Segment]:
    """Windows number k, k+1, ... of a recording of ``duration_s``, up to its end."""
    out: list[Segment] = []
    while k * hop_s < duration_s and (k == 0 or (k - 1) * hop_s + window_s < duration_s):
        start = k * hop_s
        end = min(start + window_s, duration_s)
        if end - start >= min(min_window_s, window_s) or k == 0:
            out.append(Segment(start, end))
        k += 1
    return out


def fixed_windows(
    duration_s: float, *, window_s: float = 4.0, hop_s: float = 4.0, min_window_s: float = 0.0
) -> list[Segment]:
    """Windows of ``window_s`` every ``hop_s`` seconds over ``duration_s``, the VAD-free option.

    Windows stop at the first one that reaches ``duration_s``, which is cut there; a cut window
    shorter than ``min_window_s`` is dropped, unless it is the only one.

    Raises:
        ValueError: ``window_s`` or ``hop_s`` is not positive.
    """
    if window_s <= 0 or hop_s <= 0:
        raise ValueError("window_s and hop_s must be positive")
    return _windows_from(0, duration_s, window_s, hop_s, min_window_s)


class WindowStream:
    """Streaming form of :func:`fixed_windows` with the push/flush/settled_s interface of
    :class:`SpeechStream`; the total duration need not be known in advance."""

    def __init__(
        self, sr: int, *, window_s: float = 4.0, hop_s: float = 4.0, min_window_s: float = 0.0
    ) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError("window_s and hop_s must be positive")
        self.sr = sr
        self._window_s, self._hop_s, self._min_s = window_s, hop_s, min_window_s
        self._pos = 0
        self._k = 0  # number of windows given out
        self._done = False

    @property
    def settled_s(self) -> float:
        """No window returned from now on starts before this time (in seconds)."""
        return self._k * self._hop_s

    def push(self, y: np.ndarray) -> list[Segment]:
        """Count the next block's samples; return the windows now complete."""
        self._pos += len(y)
        out = []
        while self._k * self._hop_s + self._window_s <= self._pos / self.sr:
            start = self._k * self._hop_s
            out.append(Segment(start, start + self._window_s))
            self._k += 1
        return out

    def flush(self) -> list[Segment]:
        """End of stream: the remaining windows, the last one cut at the end."""
        if self._done:
            return []
        self._done = True
        duration = self._pos / self.sr
        return _windows_from(self._k, duration, self._window_s, self._hop_s, self._min_s)
