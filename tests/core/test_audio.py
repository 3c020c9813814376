"""Tests for core.audio on files synthesised into tmp_path."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
import soxr

from core import audio
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

# (file suffix, soundfile format, subtype, max abs error of a round trip at full rate)
FORMATS = [
    ("wav", "WAV", "PCM_16", 1e-4),
    ("wav", "WAV", "PCM_24", 1e-6),
    ("wav", "WAV", "PCM_32", 1e-6),
    ("wav", "WAV", "FLOAT", 1e-7),
    ("wav", "WAV", "ULAW", 0.02),
    ("wav", "WAV", "ALAW", 0.02),
    ("flac", "FLAC", "PCM_16", 1e-4),
    ("ogg", "OGG", "VORBIS", None),
    ("mp3", "MP3", "MPEG_LAYER_III", None),
]
LOSSY = {"VORBIS", "MPEG_LAYER_III"}
RATES = [8000, 16000, 44100, 48000]


def sine(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, y, sr, fmt="WAV", subtype="PCM_16"):
    """Write ``y`` ((n,) or (channels, n)) and return the path."""
    data = y.T if y.ndim == 2 else y
    sf.write(path, data, sr, format=fmt, subtype=subtype)
    return path


def peak_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)])


# --- accepted formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("suffix", "fmt", "subtype", "_tol"), FORMATS, ids=lambda v: str(v))
def test_load_accepted_formats(tmp_path, suffix, fmt, subtype, _tol, rate):
    path = write(tmp_path / f"a.{suffix}", sine(440, rate), rate, fmt, subtype)

    info = audio.probe(path)
    y = audio.load(path)

    assert (info.format, info.subtype, info.sample_rate, info.channels) == (fmt, subtype, rate, 1)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - audio.TARGET_SR) <= (160 if subtype in LOSSY else 1)
    assert abs(peak_hz(y, audio.TARGET_SR) - 440) <= 2
    assert 0.3 < np.abs(y).max() < 0.7


@pytest.mark.parametrize(("suffix", "fmt", "subtype", "_tol"), FORMATS, ids=lambda v: str(v))
@pytest.mark.parametrize("rate", [8000, 48000])
def test_load_stereo_keeps_channels_apart(tmp_path, suffix, fmt, subtype, _tol, rate):
    y = np.stack([sine(440, rate), sine(1000, rate)])
    path = write(tmp_path / f"s.{suffix}", y, rate, fmt, subtype)

    both = audio.load(path, mono=False)
    mixed = audio.load(path)

    assert both.shape[0] == 2 and both.dtype == np.float32 and both.flags.c_contiguous
    assert abs(peak_hz(both[0], audio.TARGET_SR) - 440) <= 2
    assert abs(peak_hz(both[1], audio.TARGET_SR) - 1000) <= 2
    np.testing.assert_allclose(mixed, both.mean(axis=0), atol=1e-5)


@pytest.mark.parametrize(("suffix", "fmt", "subtype", "tol"), [f for f in FORMATS if f[3]])
def test_load_at_native_rate_returns_the_samples(tmp_path, suffix, fmt, subtype, tol):
    y = sine(300, 22050, seconds=0.5)
    path = write(tmp_path / f"n.{suffix}", y, 22050, fmt, subtype)
    np.testing.assert_allclose(audio.load(path, sr=22050), y, atol=tol)


def test_load_other_target_rate_and_channel_mix(tmp_path):
    left, right = sine(200, 8000, amp=0.4), np.zeros(8000, np.float32)
    path = write(tmp_path / "tel.wav", np.stack([left, right]), 8000, "WAV", "ULAW")

    y = audio.load(path, sr=22050)

    assert y.shape == (22050,)
    assert abs(peak_hz(y, 22050) - 200) <= 2
    assert 0.15 < np.abs(y).max() < 0.25  # the mean of a 0.4 sine and silence


def test_probe_reports_header(tmp_path):
    path = write(tmp_path / "p.flac", np.zeros((3, 8000), np.float32) + 0.1, 8000, "FLAC")
    info = audio.probe(path)
    assert info == audio.AudioInfo(str(path), "FLAC", "PCM_16", 8000, 3, 8000, 1.0)


# --- short FLAC files: decoded whole by dr_flac ---------------------------------------------------


def takes_dr_flac(path) -> bool:
    """Whether ``audio.load(path)`` decodes the file with dr_flac, without libsndfile."""
    info = audio._flac_streaminfo(path, path.read_bytes()[:64])
    return info is not None and audio._short_flac(info) is not None


@pytest.mark.parametrize(
    ("subtype", "rate", "channels"),
    [("PCM_16", 16000, 1), ("PCM_24", 44100, 2), ("PCM_S8", 8000, 3), ("PCM_16", 96000, 1)],
)
def test_flac_header_read_without_libsndfile_matches_libsndfile(tmp_path, subtype, rate, channels):
    y = np.zeros((channels, rate // 3), np.float32) + 0.1
    path = write(tmp_path / "h.flac", y, rate, "FLAC", subtype)
    read, info = audio._short_flac(audio._flac_streaminfo(path, path.read_bytes()[:64]))
    assert info == audio.probe(path)  # libsndfile's reading
    assert read(10**9).shape == (rate // 3, channels)


def without_length(path):
    """Clear the 36-bit sample count of a FLAC file's STREAMINFO (bytes 21-25): 'unknown', as
    an encoder writing to a pipe leaves it."""
    data = bytearray(path.read_bytes())
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_24", 2)])
def test_flac_without_a_length_in_its_header_is_read(tmp_path, subtype, channels):
    rng = np.random.default_rng(2)
    y = rng.uniform(-0.9, 0.9, (channels, 44100)).astype(np.float32)
    path = write(tmp_path / "piped.flac", y, 44100, "FLAC", subtype)
    expected = audio.load(path, mono=False)
    without_length(path)

    assert audio.probe(path) == audio.AudioInfo(
        str(path), "FLAC", subtype, 44100, channels, 44100, 1.0
    )
    np.testing.assert_array_equal(audio.load(path, mono=False), expected)
    blocks = list(audio.iter_blocks(path, mono=False, block_s=0.3))
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), expected)


def test_flac_without_a_length_over_the_limit_is_refused(tmp_path, monkeypatch):
    path = write(tmp_path / "piped.flac", sine(440, 16000, seconds=3), 16000, "FLAC")
    without_length(path)
    monkeypatch.setattr(audio, "_UNKNOWN_LENGTH_FLAC_SAMPLES", 16000 * 60 * 2)
    assert audio.load(path).shape == (48000,)
    monkeypatch.setattr(audio, "_UNKNOWN_LENGTH_FLAC_SAMPLES", 16000)
    with pytest.raises(UnsupportedCodecError, match=r"piped\.flac: this FLAC file does not state"):
        audio.probe(path)


def test_flac_without_a_length_and_without_audio_is_corrupt(tmp_path):
    path = write(tmp_path / "piped.flac", sine(440, 16000), 16000, "FLAC")
    without_length(path)
    path.write_bytes(path.read_bytes()[:200])  # header and metadata, no audio frame
    with pytest.raises(CorruptAudioError, match=r"piped\.flac: the file is damaged"):
        audio.load(path)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 2)])
def test_whole_flac_decoding_equals_libsndfile(tmp_path, monkeypatch, subtype, rate, channels):
    rng = np.random.default_rng(1)
    y = (rng.uniform(-0.9, 0.9, (channels, rate * 2))).astype(np.float32)
    path = write(tmp_path / "c.flac", y, rate, "FLAC", subtype)
    assert takes_dr_flac(path)

    fast = [audio.load(path, mono=mono) for mono in (True, False)]
    monkeypatch.setattr(audio, "_WHOLE_FLAC_SAMPLES", 0)  # every FLAC through libsndfile
    assert not takes_dr_flac(path)
    slow = [audio.load(path, mono=mono) for mono in (True, False)]

    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_long_and_damaged_flac_files_are_left_to_libsndfile(tmp_path, monkeypatch):
    path = write(tmp_path / "long.flac", sine(440, 16000, seconds=3), 16000, "FLAC")
    monkeypatch.setattr(audio, "_WHOLE_FLAC_SAMPLES", 16000 * 2)
    assert not takes_dr_flac(path)
    assert audio.load(path).shape == (48000,)

    cut = tmp_path / "cut.flac"  # dr_flac decodes what is left without complaint
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    monkeypatch.setattr(audio, "_WHOLE_FLAC_SAMPLES", 1 << 22)
    assert not takes_dr_flac(cut)
    with pytest.raises(CorruptAudioError, match=r"cut\.flac: the audio data is damaged"):
        audio.load(cut)


# --- block reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("mono", [True, False])
@pytest.mark.parametrize("rate", [8000, 44100, 16000])
def test_blocks_join_to_whole_load(tmp_path, rate, mono):
    rng = np.random.default_rng(0)
    y = (rng.standard_normal((2, rate * 3)) * 0.1).astype(np.float32)
    path = write(tmp_path / "b.wav", y, rate, "WAV", "FLOAT")

    blocks = list(audio.iter_blocks(path, mono=mono, block_s=0.25))
    whole = audio.load(path, mono=mono)

    assert len(blocks) >= 12
    assert all(
        b.dtype == np.float32 and b.shape[-1] <= 0.25 * audio.TARGET_SR + 2000 for b in blocks
    )
    joined = np.concatenate(blocks, axis=-1)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=1e-6)
    src = y.mean(axis=0) if mono else y
    expected = soxr.resample(src.T, rate, audio.TARGET_SR).T
    np.testing.assert_allclose(whole, expected, atol=1e-5)


# --- bad input ----------------------------------------------------------------------------------


def wav_bytes(tag: int, data: bytes = b"\0" * 1000, fmt_extra: bytes = b"") -> bytes:
    """A mono 16 kHz RIFF/WAVE file with codec ``tag`` (cbSize and ``fmt_extra`` appended)."""
    fmt = struct.pack("<HHIIHHH", tag, 1, 16000, 32000, 2, 16, len(fmt_extra)) + fmt_extra
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


AAC_GUID = struct.pack("<IHH", 0x00FF, 0, 0x10) + bytes([0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71])


def _empty(p):
    p.write_bytes(b"")


def _text(p):
    p.write_text("name,emotion\nclip1,happy\n" * 20)


def _random_bytes(p):
    p.write_bytes(np.random.default_rng(1).bytes(20_000))


def _truncated(fmt, subtype, keep=0.5):
    def make(p):
        write(p, sine(440, 16000, seconds=2), 16000, fmt, subtype)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])

    return make


def _flac_garbage(p):
    write(p, sine(440, 16000, seconds=2), 16000, "FLAC")
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = np.random.default_rng(2).bytes(2000)
    p.write_bytes(bytes(data))


def _header_only(p):
    write(p, np.zeros(0, np.float32), 16000)


def _wav_aac_extensible(p):
    extra = struct.pack("<HI", 16, 4) + AAC_GUID
    p.write_bytes(wav_bytes(0xFFFE, fmt_extra=extra))


def _wav_aac_tag(p):
    p.write_bytes(wav_bytes(0x00FF))


def _float_with(value):
    def make(p):
        y = sine(440, 16000)
        y[5000] = value
        write(p, y, 16000, "WAV", "FLOAT")

    return make


def _silent(amp):
    def make(p):
        y = np.random.default_rng(3).uniform(-amp, amp, 16000).astype(np.float32)
        write(p, y, 16000, "WAV", "FLOAT")

    return make


BAD_FILES = [
    ("empty.wav", _empty, EmptyFileError),
    ("notes.wav", _text, NotAudioError),
    ("notes.mp3", _text, NotAudioError),
    ("noise.flac", _random_bytes, NotAudioError),
    ("cut.wav", _truncated("WAV", "PCM_16"), CorruptAudioError),
    ("cut24.wav", _truncated("WAV", "PCM_24", keep=0.9), CorruptAudioError),
    ("cut.flac", _truncated("FLAC", "PCM_16"), CorruptAudioError),
    ("cut.ogg", _truncated("OGG", "VORBIS"), CorruptAudioError),
    ("cut.mp3", _truncated("MP3", "MPEG_LAYER_III"), CorruptAudioError),
    ("head.wav", _truncated("WAV", "PCM_16", keep=0.01), CorruptAudioError),
    ("garbage.flac", _flac_garbage, CorruptAudioError),
    ("aac_ext.wav", _wav_aac_extensible, UnsupportedCodecError),
    ("aac.wav", _wav_aac_tag, UnsupportedCodecError),
    ("nothing.wav", _header_only, ZeroDurationError),
    ("nan.wav", _float_with(np.nan), NonFiniteAudioError),
    ("inf.wav", _float_with(np.inf), NonFiniteAudioError),
    ("zeros.wav", _silent(0.0), SilentAudioError),
    ("hiss.wav", _silent(5e-5), SilentAudioError),
]


@pytest.mark.parametrize(("name", "make", "error"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_input_raises_typed_one_line_error(tmp_path, name, make, error):
    path = tmp_path / name
    make(path)

    with pytest.raises(error) as caught:
        audio.load(path)

    message = str(caught.value)
    assert isinstance(caught.value, AudioError) and isinstance(caught.value, ValueError)
    assert name in message and "\n" not in message
    assert type(caught.value).__name__ not in {"LibsndfileError", "RuntimeError"}


NOT_SILENT = [b for b in BAD_FILES if b[2] is not SilentAudioError]


@pytest.mark.parametrize(("name", "make", "error"), NOT_SILENT, ids=[b[0] for b in NOT_SILENT])
def test_iter_blocks_raises_the_same_errors(tmp_path, name, make, error):
    path = tmp_path / name
    make(path)
    with pytest.raises(error):
        list(audio.iter_blocks(path, block_s=0.1))


def test_too_short(tmp_path):
    path = write(tmp_path / "short.wav", sine(440, 16000, seconds=0.2), 16000)
    assert audio.load(path, min_duration_s=0.1).shape == (3200,)
    with pytest.raises(TooShortError, match=r"short\.wav: .*0\.20 s.*0\.5 s"):
        audio.load(path, min_duration_s=0.5)


def test_too_long_is_checked_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "long.flac"
    _flac_garbage(path)  # decoding it would fail: the header check must come first
    with pytest.raises(TooLongError, match=r"long\.flac: .*2\.0 s.*1\.5 s"):
        audio.load(path, max_duration_s=1.5)
    with pytest.raises(TooLongError):
        next(audio.iter_blocks(path, max_duration_s=1.5))


def test_streamed_wav_with_unknown_data_size_is_accepted(tmp_path):
    path = tmp_path / "streamed.wav"  # a WAV written to a pipe: data size 0xFFFFFFFF
    data = bytearray(write(path, sine(440, 16000, seconds=2), 16000).read_bytes())
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    assert len(audio.load(path)) == 32000
    with pytest.raises(TooLongError):
        audio.load(path, max_duration_s=1.0)


def test_unreadable_paths_raise_a_typed_error(tmp_path):
    with pytest.raises(UnreadableFileError, match="missing.wav"):
        audio.load(tmp_path / "missing.wav")
    with pytest.raises(OSError):
        audio.probe(tmp_path / "missing.wav")
    with pytest.raises(UnreadableFileError, match="cannot open"):
        audio.probe(tmp_path)


@pytest.mark.parametrize(
    ("y", "error"),
    [
        (np.array([0.1, np.nan, 0.2], np.float32), NonFiniteAudioError),
        (np.array([[0.1, 0.2], [np.inf, 0.0]], np.float32), NonFiniteAudioError),
        (np.zeros(0, np.float32), ZeroDurationError),
        (np.full(100, 0.5, np.float32), TooShortError),
        (np.zeros((2, 16000), np.float32), SilentAudioError),
        (np.full(16000, 9e-5, np.float32), SilentAudioError),
    ],
)
def test_check_signal_rejects(y, error):
    with pytest.raises(error):
        audio.check_signal(y, 16000, min_duration_s=0.5)


def test_check_signal_accepts_quiet_speech_level():
    y = sine(440, 16000, amp=1e-3)
    y[:8000] = 0
    audio.check_signal(y, 16000, min_duration_s=1.0)


# --- sniffing -----------------------------------------------------------------------------------

WRITTEN = [
    ("WAV", "PCM_16", "wav"),
    ("RF64", "PCM_16", "wav"),
    ("W64", "PCM_16", "w64"),
    ("AIFF", "PCM_16", "aiff"),
    ("FLAC", "PCM_16", "flac"),
    ("OGG", "VORBIS", "ogg"),
    ("OGG", "OPUS", "ogg"),
    ("MP3", "MPEG_LAYER_III", "mpeg"),  # libsndfile writes no ID3 tag
    ("AU", "PCM_16", "au"),
    ("CAF", "PCM_16", "caf"),
]


@pytest.mark.parametrize(("fmt", "subtype", "kind"), WRITTEN, ids=lambda v: str(v))
def test_sniff_container_names_what_libsndfile_writes(tmp_path, fmt, subtype, kind):
    path = write(tmp_path / "a", sine(440, 16000), 16000, fmt, subtype)
    head = path.read_bytes()[:16]
    assert audio.sniff_container(head) == kind
    assert audio.sniff_container(head[:6]) == kind  # a head cut short matches as far as it goes


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\0\0\0\0WAVEfmt ", "wav"),
        (b"RIFX\0\0\0\0WAVE", "wav"),
        (b"BW64\0\0\0\0WAVE", "wav"),
        (b"FORM\0\0\0\0AIFC", "aiff"),
        (b"ID3\x04\0\0\0\0\0\0", "mp3"),
        (b"\xff\xfb\x90\x64\0\0", "mpeg"),  # MPEG-1 layer III frame, no tag
        (b"\0\0\0\x20ftypM4A \0\0", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42", "matroska"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
        (b"wvpk\0\0\0\0", "wavpack"),
        (b"RIFF\0\0\0\0AVI LIST", None),  # RIFF, but a video
        (b"FORM\0\0\0\08SVX", None),
        (b"PK\x03\x04\x14\0\0\0", None),  # zip: an archive is the upload layer's business
        (b"name,emotion\n", None),
        (b"\xff", None),
        (b"", None),
    ],
)
def test_sniff_container_on_heads(head, kind):
    assert audio.sniff_container(head) == kind


def test_audio_extensions_are_lower_case_suffixes():
    assert {".wav", ".flac", ".mp3", ".ogg", ".m4a"} <= audio.AUDIO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in audio.AUDIO_EXTENSIONS)
