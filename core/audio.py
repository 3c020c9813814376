"""Read speech recordings as float32 signals at one sample rate.

Decoding is done by libsndfile (through ``soundfile``): WAV (PCM 8/16/24/32 bit, float, mu-law,
A-law, ADPCM), FLAC, OGG (Vorbis, Opus), MP3 and the other formats libsndfile knows. Files are
read block by block and resampled with a streaming soxr resampler, so memory stays at about the
size of the float32 output plus one block, whatever the length of the file. Short FLAC files,
the common case of a corpus of clips, are decoded whole by dr_flac (through ``miniaudio``),
without opening libsndfile: about 1.8x as fast (``benchmarks/bench_features.py --stages``), to
the same float32 values. So are FLAC files whose header leaves the length open (written to a
pipe), which libsndfile cannot read.

Every problem with the input raises a subclass of :class:`core.errors.AudioError` whose message
is one line naming the file; a path that does not exist or cannot be opened raises
:class:`core.errors.UnreadableFileError` (an AudioError that is also an OSError).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import miniaudio
import numpy as np
import soundfile as sf
import soxr

from core.errors import (
    AudioError,
    CorruptAudioError,
    EmptyFileError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnreadableFileError,
    UnsupportedCodecError,
    ZeroDurationError,
)

TARGET_SR = 16_000
#: File name extensions taken for audio (lower case, with the dot) when listing or uploading
#: files: the containers :func:`sniff_container` names, whether or not they decode here.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .aif .aiff .aifc .au .snd .caf .w64"
    " .rf64 .wma .webm .wv .mka".split()
)
#: A signal whose absolute peak stays below this (-80 dBFS, ~3 LSB of 16-bit PCM) is silent.
SILENCE_PEAK = 1e-4

_LOAD_BLOCK_S = 10.0
_CHECK_CHUNK = 1 << 20  # samples per chunk when scanning a signal, to avoid large temporaries
_MAX_BLOCK_SAMPLES = 1 << 24  # one read never holds more than 64 MiB, whatever the header says
# FLAC files up to this many samples (16 MiB of float32: 4.4 min at 16 kHz mono) are decoded
# whole by dr_flac; longer ones block by block by libsndfile.
_WHOLE_FLAC_SAMPLES = 1 << 22
# FLAC files whose header leaves the length open are decoded whole, up to this many samples
# (128 MiB of float32: 35 min at 16 kHz mono).
_UNKNOWN_LENGTH_FLAC_SAMPLES = 1 << 25
# Codecs whose samples are integers, so never NaN or infinite.
_INTEGER_CODED = ("PCM_", "ULAW", "ALAW")
# Codecs whose frame count is an estimate (no exact length in the header).
_ESTIMATED_LENGTH = {"MP3", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}
# Containers (as sniff_container names them) libsndfile reads: failing to open one of these
# means damage, not "not audio". Not "mpeg": random bytes start with a frame sync too often.
_DECODABLE = frozenset({"wav", "w64", "aiff", "flac", "ogg", "mp3", "au", "caf"})
# WAV format tags libsndfile 1.2 decodes; any other tag is an unsupported codec.
_WAV_TAGS = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0038, 0x0040, 0x0050,
             0x0055, 0x0101, 0x0102, 0xFFFE}  # fmt: skip
_WAV_TAG_NAMES = {0x0055: "MP3", 0x00FF: "AAC", 0x0161: "WMA", 0x1610: "AAC", 0x674F: "Vorbis"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header before decoding.

    ``frames`` and ``duration_s`` are exact for WAV, FLAC and OGG and estimated for MP3.
    """

    path: str
    format: str  # container, e.g. "WAV", "FLAC", "OGG", "MP3"
    subtype: str  # codec, e.g. "PCM_16", "VORBIS", "MPEG_LAYER_III"
    sample_rate: int
    channels: int
    frames: int
    duration_s: float


def probe(path: str | Path) -> AudioInfo:
    """Read the header of an audio file without decoding it.

    Raises:
        EmptyFileError, NotAudioError, CorruptAudioError, UnsupportedCodecError,
        ZeroDurationError: the file cannot be used.
        UnreadableFileError: the path does not exist or cannot be opened.
    """
    with _open(path) as (_, info):
        return info


def load(
    path: str | Path,
    *,
    sr: int = TARGET_SR,
    mono: bool = True,
    min_duration_s: float = 0.0,
    max_duration_s: float | None = None,
) -> np.ndarray:
    """Decode a whole file to float32 at ``sr``.

    Returns:
        np.ndarray [shape=(n,) if mono else (channels, n)], float32 in [-1, 1], at ``sr`` Hz.
        ``mono`` mixes the channels down to their mean.

    Raises:
        AudioError subclasses (see module docstring), including TooLongError (checked from the
        header before decoding), TooShortError, SilentAudioError and NonFiniteAudioError.
    """
    name = Path(path).name
    with _open(path, decode_short_flac=True) as (read, info):
        _check_max_duration(info, max_duration_s, name)
        channels = 1 if mono else info.channels
        expected = max(1, round(info.frames * sr / info.sample_rate))
        blocks = _decode(
            read, info, sr=sr, mono=mono, block_s=_LOAD_BLOCK_S, max_duration_s=max_duration_s
        )
        y, filled = None, 0
        for block in blocks:
            n = block.shape[0]
            if y is None:
                if n == expected:  # all of it in one block (a short file): no copy
                    y, filled = block.T, n
                    continue
                try:
                    y = np.empty((channels, expected), dtype=np.float32)
                except MemoryError:
                    raise TooLongError(
                        f"{name}: the audio lasts {info.duration_s:.0f} s, too long to hold in "
                        "memory"
                    ) from None
            if filled + n > y.shape[1]:  # estimated length was too short (MP3)
                extra = np.empty((channels, n + y.shape[1] // 4), dtype=np.float32)
                y = np.concatenate([y, extra], axis=1)
            y[:, filled : filled + n] = block.T
            filled += n
    if y is None:  # nothing decoded: _decode has raised unless the header announced nothing
        y = np.empty((channels, 0), dtype=np.float32)
    y = y[0, :filled] if mono else np.ascontiguousarray(y[:, :filled])
    _check_signal(y, sr, min_duration_s=min_duration_s, name=name)
    return y


def iter_blocks(
    path: str | Path,
    *,
    sr: int = TARGET_SR,
    mono: bool = True,
    block_s: float = 30.0,
    max_duration_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode a file lazily, one block of about ``block_s`` seconds at a time.

    Blocks have the same dtype and shape convention as :func:`load` (``(n,)`` or
    ``(channels, n)``) and join seamlessly: concatenated, they equal ``load(path)``.
    Format errors, TooLongError and NonFiniteAudioError are raised; silence and minimum length
    are the caller's business (:func:`check_signal`).
    """
    name = Path(path).name
    with _open(path, decode_short_flac=True) as (read, info):
        _check_max_duration(info, max_duration_s, name)
        blocks = _decode(
            read, info, sr=sr, mono=mono, block_s=block_s, max_duration_s=max_duration_s
        )
        for block in blocks:
            yield block[:, 0].copy() if mono else np.ascontiguousarray(block.T)


def check_signal(y: np.ndarray, sr: int, *, min_duration_s: float = 0.0) -> None:
    """Check that a decoded signal can be classified.

    Args:
        y: np.ndarray [shape=(n,) or (channels, n)], samples in [-1, 1].
        sr: sample rate of ``y`` in Hz.
        min_duration_s: shortest accepted duration in seconds.

    Raises:
        NonFiniteAudioError: a sample is NaN or infinite.
        ZeroDurationError: ``y`` holds no samples.
        TooShortError: ``y`` lasts less than ``min_duration_s``.
        SilentAudioError: every sample is below :data:`SILENCE_PEAK` in magnitude.
    """
    _check_signal(y, sr, min_duration_s=min_duration_s, name="audio")


def sniff_container(head: bytes) -> str | None:
    """The audio container a file's first bytes announce, or None if they announce none.

    Says "this starts like audio", not "this decodes here": ``mp4``, ``matroska``, ``asf`` and
    ``wavpack`` do not. A head cut short still matches as far as it goes.

    Args:
        head: the first bytes of the file; 12 are enough.

    Returns:
        ``"wav"`` (RIFF, RIFX, RF64 or BW64 WAVE), ``"w64"``, ``"aiff"``, ``"flac"``, ``"ogg"``,
        ``"mp3"`` (an ID3 tag), ``"mpeg"`` (an untagged MPEG audio frame sync: MP3, MP2 or ADTS
        AAC; weak evidence, as 1 in 2048 random heads has one), ``"au"``, ``"caf"``,
        ``"wavpack"``, ``"mp4"`` (also M4A and 3GP), ``"matroska"`` (also WebM), ``"asf"``
        (WMA), or None.
    """
    kind = _MAGIC.get(head[:4])
    if kind == "wav":
        return kind if b"WAVE".startswith(head[8:12]) else None
    if kind == "aiff":
        return kind if any(t.startswith(head[8:12]) for t in (b"AIFF", b"AIFC")) else None
    if kind is not None:
        return kind
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mpeg"
    return None


_MAGIC = {
    b"RIFF": "wav", b"RIFX": "wav", b"RF64": "wav", b"BW64": "wav", b"riff": "w64",
    b"FORM": "aiff", b"fLaC": "flac", b"OggS": "ogg", b".snd": "au", b"caff": "caf",
    b"wvpk": "wavpack", b"\x1a\x45\xdf\xa3": "matroska", b"\x30\x26\xb2\x75": "asf",
}  # fmt: skip


# --- internals --------------------------------------------------------------------------------


#: ``read(frames, dtype=..., always_2d=...)``: the next ``frames`` frames, shape (n, channels).
Reader = Callable[..., np.ndarray]


@contextlib.contextmanager
def _open(
    path: str | Path, *, decode_short_flac: bool = False
) -> Iterator[tuple[Reader, AudioInfo]]:
    """Open ``path``, translating every failure to an AudioError; yield a reader and the header.

    With ``decode_short_flac``, a short FLAC file is decoded whole by dr_flac and read from
    memory, without libsndfile; any other file, or a FLAC file dr_flac does not decode to the
    length its header announces, is opened with libsndfile. A FLAC file whose header leaves
    the length open is always decoded whole (even to probe it): libsndfile cannot read it.
    """
    path = Path(path)
    name = path.name
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnreadableFileError(f"{name}: cannot open the file ({reason.lower()})") from None
    if not head:
        raise EmptyFileError(f"{name}: the file is empty (0 bytes)")
    flac = _flac_streaminfo(path, head)
    # libsndfile cannot read a FLAC file whose header leaves the length open (written to a pipe)
    if flac is not None and (decode_short_flac or flac.frames == 0):
        decoded = _short_flac(flac)
        if decoded is not None:
            yield decoded
            return
    try:
        f = sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        raise _open_error(exc, head, name) from None
    with f:
        info = AudioInfo(
            path=str(path),
            format=f.format,
            subtype=f.subtype,
            sample_rate=f.samplerate,
            channels=f.channels,
            frames=f.frames,
            duration_s=f.frames / f.samplerate if f.samplerate > 0 else 0.0,
        )
        if info.sample_rate <= 0 or info.channels <= 0:
            raise CorruptAudioError(f"{name}: the header is damaged (no sample rate or channels)")
        _check_wav_length(f, info, name)
        if info.frames <= 0:
            raise ZeroDurationError(f"{name}: the file contains no audio samples")
        yield f.read, info


def _open_error(exc: sf.LibsndfileError, head: bytes, name: str) -> AudioError:
    """Map a libsndfile error raised while opening a file to the AudioError it means."""
    detail = _detail(exc)
    lowered = detail.lower()
    kind = sniff_container(head)
    if "unimplemented" in lowered or "unsupported encoding" in lowered or "wavpack" in lowered:
        return UnsupportedCodecError(
            f"{name}: this {'WAV file' if kind == 'wav' else 'file'} uses a codec that cannot be "
            "decoded here; convert it to PCM WAV or FLAC"
        )
    tag = _wav_format_tag(head)
    if tag is not None and tag not in _WAV_TAGS:
        codec = _WAV_TAG_NAMES.get(tag, "unknown")
        return UnsupportedCodecError(
            f"{name}: WAV with codec 0x{tag:04X} ({codec}) cannot be decoded; "
            "convert it to PCM WAV or FLAC"
        )
    if kind not in _DECODABLE and exc.code in (1, 7):
        # 1 = format not recognised; 7 = the MP3 decoder, tried last, found no frame either.
        return NotAudioError(
            f"{name}: not a readable audio file (accepted: WAV, FLAC, OGG/Vorbis, MP3)"
        )
    return CorruptAudioError(f"{name}: the file is damaged or truncated ({detail})")


def _detail(exc: RuntimeError) -> str:
    """libsndfile's own wording, on one line, without its "Error : " prefix."""
    text = getattr(exc, "error_string", None) or str(exc)
    text = " ".join(text.split())
    return text.removeprefix("Error : ").rstrip(".")


def _wav_format_tag(head: bytes) -> int | None:
    """The codec tag of a WAV file whose 'fmt ' chunk comes first, else None."""
    if head[:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or len(head) < 22:
        return None
    return struct.unpack_from("<H", head, 20)[0]


def _check_wav_length(f: sf.SoundFile, info: AudioInfo, name: str) -> None:
    """libsndfile silently shortens a WAV whose data chunk runs past the end of the file."""
    if info.format != "WAV":
        return
    m = re.search(r"^data\s*:\s*(\d+) \(should be (\d+)\)", f.extra_info, re.MULTILINE)
    if m is None:
        return
    declared, present = int(m.group(1)), int(m.group(2))
    if 0 < declared < 0xFFFFFFFF:  # 0 and 0xFFFFFFFF mean "unknown" (streamed WAV)
        raise CorruptAudioError(
            f"{name}: the file is truncated (header announces {declared} bytes of audio, "
            f"only {present} are present)"
        )


def _check_max_duration(info: AudioInfo, max_duration_s: float | None, name: str) -> None:
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise TooLongError(
            f"{name}: the audio lasts {info.duration_s:.1f} s, longer than the "
            f"{max_duration_s:g} s maximum"
        )


def _decode(
    read: Reader,
    info: AudioInfo,
    *,
    sr: int,
    mono: bool,
    block_s: float,
    max_duration_s: float | None,
) -> Iterator[np.ndarray]:
    """Yield float32 blocks of shape (n, channels) at ``sr`` (channels = 1 when ``mono``)."""
    name = Path(info.path).name
    channels = 1 if mono else info.channels
    stream = None
    if info.sample_rate != sr:
        stream = soxr.ResampleStream(info.sample_rate, sr, channels, dtype="float32")
    block_frames = max(1, min(int(block_s * info.sample_rate), _MAX_BLOCK_SAMPLES // info.channels))
    max_frames = None if max_duration_s is None else math.ceil(max_duration_s * info.sample_rate)
    check_finite = not info.subtype.startswith(_INTEGER_CODED)  # integers cannot be NaN
    done = 0
    while True:
        try:
            x = read(block_frames, dtype="float32", always_2d=True)
        except RuntimeError as exc:  # LibsndfileError and the decoders' own failures
            where = f" after {done / info.sample_rate:.1f} s" if done else ""
            raise CorruptAudioError(
                f"{name}: the audio data is damaged{where} ({_detail(exc)})"
            ) from None
        done += len(x)
        if max_frames is not None and done > max_frames:
            raise TooLongError(
                f"{name}: the audio lasts more than the {max_duration_s:g} s maximum"
            )
        if check_finite and not np.isfinite(x).all():
            raise NonFiniteAudioError(
                f"{name}: the audio contains NaN or infinite samples near "
                f"{done / info.sample_rate:.1f} s"
            )
        if mono and x.shape[1] > 1:
            x = x.mean(axis=1, keepdims=True, dtype=np.float32)
        last = len(x) == 0
        y = x if stream is None else stream.resample_chunk(x, last=last)
        if len(y):
            yield y
        if last:
            break
    _check_complete(info, done, name)


def _short_flac(info: AudioInfo) -> tuple[Reader, AudioInfo] | None:
    """A reader over a short FLAC file decoded whole by dr_flac, and its header (``info``, from
    :func:`_flac_streaminfo`); None when the file is long or dr_flac does not decode it to
    exactly the announced length: damaged files are left to libsndfile, whose errors say what
    is wrong. A file of unknown length (``info.frames == 0``) is always decoded here."""
    if info.frames == 0:
        return _flac_of_unknown_length(info)
    if info.frames * info.channels > _WHOLE_FLAC_SAMPLES:
        return None
    try:
        decoded = miniaudio.flac_read_file_f32(info.path)
    except miniaudio.MiniaudioError:
        return None
    announced = (info.frames, info.channels, info.sample_rate)
    if (decoded.num_frames, decoded.nchannels, decoded.sample_rate) != announced:
        return None
    samples = np.frombuffer(decoded.samples, np.float32).reshape(-1, info.channels)
    return _array_reader(samples), info


def _flac_of_unknown_length(info: AudioInfo) -> tuple[Reader, AudioInfo]:
    """Decode a FLAC file whose header does not state its length, up to
    ``_UNKNOWN_LENGTH_FLAC_SAMPLES``; return a reader and the header with the decoded length."""
    name = Path(info.path).name
    limit = _UNKNOWN_LENGTH_FLAC_SAMPLES // info.channels
    chunks, frames = [], 0
    stream = miniaudio.stream_file(
        info.path,
        output_format=miniaudio.SampleFormat.FLOAT32,
        nchannels=info.channels,
        sample_rate=info.sample_rate,  # as in the file: no conversion, same samples as dr_flac
        frames_to_read=1 << 16,
    )
    try:
        for chunk in stream:
            frames += len(chunk) // info.channels
            if frames > limit:
                raise UnsupportedCodecError(
                    f"{name}: this FLAC file does not state its length and lasts more than "
                    f"{limit / info.sample_rate / 60:.0f} min; re-encode it to a file "
                    "(e.g. with flac or ffmpeg) so that the header holds the length"
                )
            chunks.append(np.frombuffer(chunk, np.float32))
    except miniaudio.MiniaudioError as exc:
        raise CorruptAudioError(f"{name}: the audio data is damaged ({exc})") from None
    if frames == 0:
        raise CorruptAudioError(f"{name}: the file is damaged (no audio frame could be decoded)")
    samples = np.concatenate(chunks).reshape(-1, info.channels)
    found = dataclasses.replace(info, frames=frames, duration_s=frames / info.sample_rate)
    return _array_reader(samples), found


def _array_reader(samples: np.ndarray) -> Reader:
    """A reader over decoded samples [shape=(frames, channels)]."""
    position = 0

    def read(frames: int, **_: object) -> np.ndarray:
        nonlocal position
        block = samples[position : position + frames]
        position += len(block)
        return block

    return read


def _flac_streaminfo(path: Path, head: bytes) -> AudioInfo | None:
    """The header of a FLAC file read from its STREAMINFO block, as libsndfile reports it (but
    ``frames`` is 0 when the header leaves the length open); None when ``head`` does not start
    with a STREAMINFO block or announces a sample size libsndfile does not name."""
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0 or head[5:8] != b"\0\0\x22":
        return None
    # 20 bits sample rate, 3 bits channels - 1, 5 bits bits per sample - 1, 36 bits frames
    fields = int.from_bytes(head[18:26], "big")
    rate, frames = fields >> 44, fields & ((1 << 36) - 1)
    channels, bits = (fields >> 41 & 0x7) + 1, (fields >> 36 & 0x1F) + 1
    subtype = {8: "PCM_S8", 16: "PCM_16", 24: "PCM_24"}.get(bits)
    if rate == 0 or subtype is None:
        return None
    return AudioInfo(str(path), "FLAC", subtype, rate, channels, frames, frames / rate)


def _check_complete(info: AudioInfo, read: int, name: str) -> None:
    """Fewer samples than the header announced means the file was cut short."""
    slack = 0
    if info.format in _ESTIMATED_LENGTH or info.subtype in _ESTIMATED_LENGTH:
        slack = max(info.frames // 50, info.sample_rate // 10)
    if read < info.frames - slack:
        raise CorruptAudioError(
            f"{name}: the file is truncated (decoded {read / info.sample_rate:.2f} s of "
            f"{info.duration_s:.2f} s announced)"
        )


def _check_signal(y: np.ndarray, sr: int, *, min_duration_s: float, name: str) -> None:
    n = y.shape[-1]
    peak = 0.0
    for i in range(0, n, _CHECK_CHUNK):
        chunk = y[..., i : i + _CHECK_CHUNK]
        high, low = float(chunk.max()), float(chunk.min())  # NaN propagates through both
        if not (math.isfinite(high) and math.isfinite(low)):
            raise NonFiniteAudioError(f"{name}: the audio contains NaN or infinite samples")
        peak = max(peak, high, -low)
    if n == 0:
        raise ZeroDurationError(f"{name}: the audio contains no samples")
    duration = n / sr
    if duration < min_duration_s:
        raise TooShortError(
            f"{name}: the audio lasts {duration:.2f} s, shorter than the "
            f"{min_duration_s:g} s minimum"
        )
    if peak < SILENCE_PEAK:
        level = 20 * math.log10(peak) if peak > 0 else -math.inf
        raise SilentAudioError(f"{name}: the audio is silent (peak level {level:.0f} dBFS)")
