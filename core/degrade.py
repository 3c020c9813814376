"""Channel degradations and augmentations: the telephone band with G.711 mu-law, GSM 06.10,
AMR-NB or G.721, an 8 kHz VoIP recording, an Opus call, packet loss, a lower recording rate,
additive white, pink, brown or phone-line noise, speed perturbation, gain, a random cut of the
speech (segment-like training rows).

Every function is pure: it returns a new float32 array and leaves its input alone. Randomness
comes only from the ``rng`` argument, so the same seed gives the same output.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfiltfilt

Degradation = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

PHONE_SR = 8_000
PHONE_BAND_HZ = (300.0, 3400.0)
MU = 255.0
_FRAME_S = 0.02
_P56_MARGIN_DB = 15.9  # ITU-T P.56: frames this far below the active level count as pauses


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711-style mu-law (mu=255) compression of ``x`` in [-1, 1] to int8 codes.

    Uses the continuous companding law, then 8 bits: one sign bit and 7 magnitude bits.
    Samples outside [-1, 1] saturate, as on a real codec.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    companded = np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return (np.sign(x) * np.round(companded * 127.0)).astype(np.int8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mulaw_encode`: int8 codes -> float32 samples in [-1, 1]."""
    c = np.asarray(codes, dtype=np.float64) / 127.0
    return (np.sign(c) * np.expm1(np.abs(c) * np.log1p(MU)) / MU).astype(np.float32)


def telephone(y: np.ndarray, sr: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Simulate a narrow-band phone line: 300-3400 Hz, 8 kHz, G.711 mu-law, back to ``sr``.

    Args:
        y: mono float32 signal [shape=(n,)], nominally in [-1, 1].
        sr: its sample rate in Hz (>= 8000).
        rng: unused (the channel is deterministic); accepted so that every degradation has
            the same signature.

    Returns:
        float32 [shape=(n,)] at ``sr``.
    """
    del rng
    return _phone_channel(y, sr, lambda narrow: mulaw_decode(mulaw_encode(narrow)))


def gsm(y: np.ndarray, sr: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Simulate a mobile call: 300-3400 Hz, 8 kHz, the GSM 06.10 full-rate codec (13 kbit/s,
    libsndfile's encoder and decoder), back to ``sr``. Same arguments as :func:`telephone`."""
    del rng
    return _phone_channel(y, sr, lambda narrow: _libsndfile_codec(narrow, "GSM610"))


def g721(y: np.ndarray, sr: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Simulate a DECT or old PBX line: 300-3400 Hz, 8 kHz, G.721 ADPCM (32 kbit/s, libsndfile's
    encoder and decoder), back to ``sr``. Same arguments as :func:`telephone`."""
    del rng
    return _phone_channel(y, sr, lambda narrow: _libsndfile_codec(narrow, "G721_32"))


def voip(y: np.ndarray, sr: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Simulate a call as a VoIP recorder stores it: 8 kHz G.711 mu-law with the whole 0-4 kHz
    band, without the analogue 300-3400 Hz band-pass of :func:`telephone` (digital lines,
    softphones and call-centre recorders keep the voice's fundamental), back to ``sr``. Same
    arguments as :func:`telephone`."""
    del rng
    return _phone_channel(y, sr, lambda narrow: mulaw_decode(mulaw_encode(narrow)), band=None)


#: Sample rates an Opus stream can carry; other signals are coded at 48 kHz.
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
#: libsndfile sets the Opus bitrate from its compression level: about 256 kbit/s at 0, 6 at 1.
_OPUS_KBPS_RANGE = (6.0, 256.0)


def opus(y: np.ndarray, sr: int, kbps: float) -> np.ndarray:
    """Simulate a VoIP or video call through Opus (WebRTC, Teams, most softphones) at about
    ``kbps`` kbit/s (variable bitrate, libsndfile's libopus encoder and decoder, in memory), at
    ``sr`` when Opus can carry that rate, else at 48 kHz; back to ``sr``. At low bitrates the
    encoder itself narrows the band. Returns float32 [shape=(n,)], the length of ``y``.

    Raises:
        ValueError: ``kbps`` is outside 6-256 kbit/s.
    """
    level = opus_compression_level(kbps)
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return y.copy()
    rate = sr if sr in OPUS_RATES else 48_000
    coded = y if rate == sr else soxr.resample(y, sr, rate, quality="HQ")
    encoded = io.BytesIO()
    with sf.SoundFile(
        encoded, "w", rate, 1, format="OGG", subtype="OPUS", compression_level=level
    ) as f:
        f.write(np.clip(coded, -1.0, 1.0))
    encoded.seek(0)
    decoded, _ = sf.read(encoded, dtype="float32")
    if rate != sr:
        decoded = soxr.resample(decoded, rate, sr, quality="HQ")
    return _same_length(decoded, y.size)


def opus_compression_level(kbps: float) -> float:
    """libsndfile's ``compression_level`` for an Opus file at about ``kbps`` kbit/s.

    Raises:
        ValueError: ``kbps`` is outside the 6-256 kbit/s that libsndfile can set.
    """
    low, high = _OPUS_KBPS_RANGE
    if not low <= kbps <= high:
        raise ValueError(f"the Opus bitrate must be {low:g}-{high:g} kbit/s, got {kbps}")
    return (high - kbps) / (high - low)


#: The eight AMR-NB modes in kbit/s (3GPP TS 26.071); 12.2 is GSM's enhanced full rate.
AMR_MODES_KBPS = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)
_AMR_DELAY = 40  # samples at 8 kHz: the encoder's 5 ms look-ahead, removed after decoding


def amr(y: np.ndarray, sr: int, kbps: float) -> np.ndarray:
    """Simulate a mobile call through AMR-NB, the 3G/4G voice codec: 300-3400 Hz, 8 kHz, one of
    :data:`AMR_MODES_KBPS` (OpenCORE's encoder and FFmpeg's decoder, through PyAV), back to
    ``sr``. Returns float32 [shape=(n,)], the length of ``y``.

    Raises:
        ValueError: ``kbps`` is not an AMR-NB mode.
        ImportError: PyAV is not installed (``pip install aer[amr]``).
    """
    bit_rate = amr_bit_rate(kbps)
    return _phone_channel(y, sr, lambda narrow: _amr_codec(narrow, bit_rate))


def amr_bit_rate(kbps: float) -> int:
    """The encoder's bit rate (bit/s) of the AMR-NB mode ``kbps``.

    Raises:
        ValueError: ``kbps`` is not one of :data:`AMR_MODES_KBPS`.
    """
    if not any(abs(kbps - mode) < 1e-6 for mode in AMR_MODES_KBPS):
        modes = ", ".join(f"{m:g}" for m in AMR_MODES_KBPS)
        raise ValueError(f"an AMR-NB mode must be one of {modes} kbit/s, got {kbps:g}")
    return round(kbps * 1000)


def _amr_codec(narrow: np.ndarray, bit_rate: int) -> np.ndarray:
    """``narrow`` (8 kHz) encoded to AMR-NB frames in memory and decoded again."""
    try:
        import av  # optional: only this degradation needs FFmpeg
    except ImportError as exc:
        raise ImportError("the amr degradation needs PyAV: pip install 'aer[amr]'") from exc
    encoder = av.CodecContext.create("libopencore_amrnb", "w")
    encoder.sample_rate, encoder.layout, encoder.format = PHONE_SR, "mono", "s16"
    encoder.bit_rate, encoder.time_base = bit_rate, Fraction(1, PHONE_SR)
    encoder.open()
    decoder = av.CodecContext.create("amrnb", "r")
    decoder.sample_rate, decoder.layout = PHONE_SR, "mono"
    size = encoder.frame_size  # 160 samples: 20 ms
    pcm = np.round(np.clip(narrow, -1.0, 1.0) * 32767).astype(np.int16)
    pcm = np.pad(pcm, (0, -(pcm.size + _AMR_DELAY) % size + _AMR_DELAY))
    decoded = []
    for start in range(0, pcm.size + size, size):  # one step more: None flushes the encoder
        frame = None
        if start < pcm.size:
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + size], layout="mono")
            frame.sample_rate, frame.pts = PHONE_SR, start
        for packet in encoder.encode(frame):
            decoded += [f.to_ndarray().reshape(-1) for f in decoder.decode(packet)]
    line = np.concatenate(decoded).astype(np.float32)
    return _same_length(line[_AMR_DELAY:], narrow.size)


PACKET_S = 0.02  # 20 ms: the packet length of G.711 and Opus calls
#: Concealment gain for the 1st, 2nd, 3rd consecutive lost packet; silence after that.
_CONCEAL_GAINS = (1.0, 0.5, 0.25)
EDGE_S = 0.0025  # raised-cosine fade on each side of a concealed packet's edges


def packet_loss(
    y: np.ndarray, sr: int, percent: float, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Simulate a VoIP call that loses ``percent`` % of its 20 ms packets, each lost
    independently, concealed as a basic receiver does (G.711 Appendix I in spirit, without
    its pitch-synchronous overlap-add): a lost packet repeats the last one received, fading
    by 6 dB per further loss in a row, and a fourth loss in a row is silence. Each edge of a
    concealed packet fades out and in over ``EDGE_S`` on either side, so the seams do not
    click: a click would spread energy over the whole band, above the 4 kHz of a narrowband
    call. Harsher than Opus's own concealment. Returns float32 [shape=(n,)], the length of
    ``y``.

    Raises:
        ValueError: ``percent`` is outside 0-100.
    """
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"the packet loss must be 0-100 %, got {percent}")
    rng = rng if rng is not None else np.random.default_rng()
    out = np.array(y, dtype=np.float32)
    size = max(1, round(PACKET_S * sr))
    n_packets = -(-out.size // size)
    lost = rng.random(n_packets) < percent / 100.0
    last = np.zeros(size, dtype=np.float32)
    run = 0
    for i in range(n_packets):
        packet = out[i * size : (i + 1) * size]
        if not lost[i]:
            last[: packet.size] = packet
            run = 0
            continue
        run += 1
        fade = _CONCEAL_GAINS[run - 1] if run <= len(_CONCEAL_GAINS) else 0.0
        packet[:] = fade * last[: packet.size]
    return _fade_seams(out, size, lost, min(size // 2, round(EDGE_S * sr)))


def _fade_seams(x: np.ndarray, size: int, lost: np.ndarray, edge: int) -> np.ndarray:
    """``x`` faded to zero and back (``edge`` samples each side) at every packet seam next to a
    lost packet."""
    if edge < 1:
        return x
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)).astype(np.float32)
    seams = np.flatnonzero(lost[1:] | lost[:-1]) + 1
    for b in seams * size:
        x[b - edge : b] *= ramp[::-1][: x[b - edge : b].size]
        x[b : b + edge] *= ramp[: x[b : b + edge].size]
    return x


def lower_rate(y: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """``y`` as if recorded at ``rate`` Hz: resampled down (soxr, whose anti-aliasing filter
    removes everything above ``rate / 2``) and back up to ``sr``. A rate at or above ``sr``
    loses nothing. Returns float32 [shape=(n,)], the length of ``y``.

    Raises:
        ValueError: ``rate`` is not a positive number.
    """
    if not rate > 0:
        raise ValueError(f"the recording rate must be a positive number of Hz, got {rate}")
    y = np.asarray(y, dtype=np.float32)
    if rate >= sr or y.size == 0:
        return y.copy()
    down = soxr.resample(y, sr, rate, quality="HQ")
    return _same_length(soxr.resample(down, rate, sr, quality="HQ"), y.size)


def _same_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` samples, float32 (resampling may leave it one off)."""
    return np.pad(x[:n], (0, max(0, n - x.size))).astype(np.float32)


def _libsndfile_codec(narrow: np.ndarray, subtype: str) -> np.ndarray:
    """``narrow`` (8 kHz) encoded to a WAV ``subtype`` in memory and decoded again."""
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(narrow, -1.0, 1.0), PHONE_SR, format="WAV", subtype=subtype)
    encoded.seek(0)
    decoded, _ = sf.read(encoded, dtype="float32")
    return np.pad(decoded[: narrow.size], (0, max(0, narrow.size - decoded.size)))


def _phone_channel(
    y: np.ndarray,
    sr: int,
    codec: Callable[[np.ndarray], np.ndarray],
    band: tuple[float, float] | None = PHONE_BAND_HZ,
) -> np.ndarray:
    """Band-pass ``y`` to ``band`` (None: no band-pass), resample to 8 kHz, apply ``codec``,
    come back."""
    if sr < PHONE_SR:
        raise ValueError(f"a phone channel needs a sample rate of at least {PHONE_SR} Hz, got {sr}")
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return y.copy()
    if band is not None:
        sos = butter(6, band, btype="bandpass", fs=sr, output="sos")
        # sosfiltfilt needs a signal longer than its padding; very short inputs use a shorter pad
        y = sosfiltfilt(sos, y, padlen=min(3 * (2 * len(sos) + 1), y.size - 1)).astype(np.float32)
    narrow = soxr.resample(y, sr, PHONE_SR, quality="HQ")
    line = codec(narrow)
    return _same_length(soxr.resample(line, PHONE_SR, sr, quality="HQ"), y.size)


def add_line_noise(
    y: np.ndarray, snr_db: float, *, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """Add white noise as a phone line or an 8 kHz recorder adds it: flat up to 4 kHz, nothing
    above, at ``snr_db`` relative to the active power of ``y``.

    Noise that enters after the phone band-pass (line hiss, codec and recording noise) fills
    the whole narrow band, including below 300 Hz and above 3400 Hz, where ``telephone`` leaves
    nothing: ``telephone+line:30`` is a phone call as it is stored. The SNR is exact.

    Args:
        y: mono float32 signal [shape=(n,)] at ``sr`` >= 8000 Hz.
        snr_db: signal-to-noise ratio in dB (finite).
        rng: source of the noise; the same seed gives the same output.
        sr: sample rate of ``y`` in Hz.
    """
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number, got {snr_db}")
    if sr < PHONE_SR:
        raise ValueError(f"line noise needs a sample rate of at least {PHONE_SR} Hz, got {sr}")
    y = np.asarray(y, dtype=np.float32)
    level = active_power(y, sr)
    if y.size == 0 or level == 0.0:
        return y.copy()
    n_line = int(np.ceil(y.size * PHONE_SR / sr)) + 1
    noise = rng.standard_normal(n_line).astype(np.float32)
    if sr != PHONE_SR:
        noise = soxr.resample(noise, PHONE_SR, sr, quality="HQ")
    noise = np.pad(noise[: y.size], (0, max(0, y.size - noise.size))).astype(np.float64)
    noise *= np.sqrt(level / 10 ** (snr_db / 10) / np.mean(noise**2))
    return (y + noise).astype(np.float32)


def active_power(y: np.ndarray, sr: int | None = None) -> float:
    """Mean power of the active (non-pause) part of ``y``, a simplified ITU-T P.56 level.

    Splits ``y`` into 20 ms frames (at 16 kHz when ``sr`` is not given) and averages the power
    of frames within 15.9 dB of the running active level, iterating until it settles. Pauses
    and leading/trailing silence therefore do not dilute the level.
    """
    y = np.asarray(y, dtype=np.float64)
    n = max(1, int(round(_FRAME_S * (sr or 16_000))))
    frames = y[: y.size // n * n].reshape(-1, n) if y.size >= n else y.reshape(1, -1)
    power = np.mean(frames**2, axis=1)
    level = float(np.mean(power))
    for _ in range(20):
        active = power[power >= level * 10 ** (-_P56_MARGIN_DB / 10)]
        new = float(np.mean(active)) if active.size else level
        if np.isclose(new, level, rtol=1e-6):
            break
        level = new
    return level


def add_noise(
    y: np.ndarray,
    snr_db: float,
    *,
    rng: np.random.Generator,
    sr: int | None = None,
    color: str = "white",
) -> np.ndarray:
    """Add Gaussian noise at ``snr_db`` relative to the active power of ``y``.

    ``color="white"``: a flat spectrum. ``color="pink"``: power falling as 1/f (-10 dB per
    decade), like much real background (ventilation, traffic, room rumble), with most of its
    power where speech has its pitch and first formants. ``color="brown"``: 1/f^2 (-20 dB per
    decade), a deeper rumble. The noise is rescaled so that its empirical power is exact,
    making the SNR exact too.

    Args:
        y: mono float32 signal [shape=(n,)].
        snr_db: signal-to-noise ratio in dB (finite).
        rng: source of the noise; the same seed gives the same output.
        sr: sample rate, only used to size the 20 ms frames of the active-level estimate.
        color: ``"white"``, ``"pink"`` or ``"brown"``.

    Returns:
        float32 [shape=(n,)]; ``y`` unchanged when it is all zeros.
    """
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number, got {snr_db}")
    y = np.asarray(y, dtype=np.float32)
    level = active_power(y, sr)
    if y.size == 0 or level == 0.0:
        return y.copy()
    if color not in _NOISE_SLOPES:
        raise ValueError(f"noise color must be one of {', '.join(_NOISE_SLOPES)}, got {color!r}")
    noise = rng.standard_normal(y.size)
    if _NOISE_SLOPES[color]:
        noise = _tilt(noise, _NOISE_SLOPES[color])
    noise *= np.sqrt(level / 10 ** (snr_db / 10) / np.mean(noise**2))
    return (y + noise).astype(np.float32)


#: Noise colours: the power spectrum falls as 1/f^slope.
_NOISE_SLOPES = {"white": 0, "pink": 1, "brown": 2}


def _tilt(white: np.ndarray, slope: int) -> np.ndarray:
    """White noise shaped to a 1/f^slope power spectrum (no DC)."""
    spectrum = np.fft.rfft(white)
    k = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= k[1:] ** (slope / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, white.size)


def speed(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: play ``y`` ``factor`` times faster.

    Resamples from ``sr`` to ``sr / factor`` (soxr, HQ) and keeps the result at ``sr``, so tempo,
    pitch and formants all scale by ``factor`` (0.9 = 10 % slower and lower).

    Args:
        y: mono float32 signal [shape=(n,)].
        sr: its sample rate in Hz.
        factor: speed factor, > 0 (typically 0.9 to 1.1).

    Returns:
        float32 [shape=(about n / factor,)] at ``sr``.
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"speed factor must be a positive number, got {factor}")
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0 or factor == 1.0:
        return y.copy()
    return soxr.resample(y, sr, sr / factor, quality="HQ").astype(np.float32)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """``y`` scaled by ``db`` decibels (no clipping: a float signal may exceed 1 after +dB)."""
    if not np.isfinite(db):
        raise ValueError(f"gain must be a finite number of dB, got {db}")
    return (np.asarray(y, dtype=np.float32) * np.float32(10 ** (db / 20))).astype(np.float32)


#: Frames this far below the active level (dB) do not count as speech when a crop looks for it.
_CROP_SPEECH_DB = 30.0
CROP_MIN_S = 1.0  # the shortest crop, unless the argument itself is shorter


def speech_span(y: np.ndarray, sr: int) -> tuple[int, int]:
    """``[start, end)`` in samples from the first to the last 20 ms frame within 30 dB of the
    active level of ``y`` (see :func:`active_power`): the clip without the silence around it.
    The whole signal when it is silent or shorter than a frame."""
    y = np.asarray(y, dtype=np.float64)
    n = max(1, round(_FRAME_S * sr))
    if y.size < n:
        return 0, y.size
    power = np.mean(y[: y.size // n * n].reshape(-1, n) ** 2, axis=1)
    level = active_power(y, sr)
    loud = np.flatnonzero(power >= level * 10 ** (-_CROP_SPEECH_DB / 10)) if level > 0 else []
    if len(loud) == 0:
        return 0, y.size
    return int(loud[0] * n), min(y.size, int((loud[-1] + 1) * n))


def crop(y: np.ndarray, sr: int, max_s: float, *, rng: np.random.Generator) -> np.ndarray:
    """A random cut from the speech of ``y``, as a voice activity detector hands a segment to
    the model: the length is drawn uniformly from ``CROP_MIN_S``-``max_s`` seconds (exactly
    ``max_s`` when that is shorter), the start uniformly within :func:`speech_span`, so that the
    silence around the utterance is left out. Speech shorter than the drawn length gives a cut
    centred on the speech, widened into the silence, or the whole signal when that is shorter.

    Args:
        y: mono float32 signal [shape=(n,)].
        sr: its sample rate in Hz.
        max_s: the longest cut in seconds, > 0.
        rng: draws the length and the start; the same seed gives the same cut.

    Returns:
        float32 [shape=(m,)], m <= n: a copy.
    """
    if not (np.isfinite(max_s) and max_s > 0):
        raise ValueError(f"the crop length must be a positive number of seconds, got {max_s}")
    y = np.asarray(y, dtype=np.float32)
    length = round(rng.uniform(min(CROP_MIN_S, max_s), max_s) * sr)
    if length >= y.size:
        return y.copy()
    start, end = speech_span(y, sr)
    if end - start >= length:
        at = start + int(rng.integers(0, end - start - length + 1))
    else:
        at = min(max(0, (start + end - length) // 2), y.size - length)
    return y[at : at + length].copy()


def _identity(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(y, dtype=np.float32)


def _requires(ok: Callable[[float], bool], problem: str) -> Callable[[float], object]:
    """An argument check that raises ``ValueError(problem)`` when ``ok(value)`` is false."""

    def check(value: float) -> None:
        if not ok(value):
            raise ValueError(problem)

    return check


@dataclass(frozen=True)
class DegradationSpec:
    """One step name of a degradation spec: ``name`` alone, or ``name:<arg>`` when ``arg`` is set.

    ``build`` makes the degradation: ``build()`` for a plain name, ``build(value)`` for one that
    takes a number. ``check(value)`` raises ValueError on a number ``build`` would refuse later,
    so that a bad spec fails when it is parsed, not at the first clip.
    """

    name: str
    description: str
    build: Callable[..., Degradation]
    arg: str | None = None  # what the number means, e.g. "SNR in dB"
    example: str | None = None  # e.g. "noise:20"
    check: Callable[[float], object] | None = None

    @property
    def usage(self) -> str:
        """``name``, or ``name:<arg>``."""
        return self.name if self.arg is None else f"{self.name}:<{self.arg}>"


def _noise(color: str) -> Callable[[float], Degradation]:
    return lambda snr: lambda y, sr, rng: add_noise(y, snr, rng=rng, sr=sr, color=color)


def _phone(channel: Callable[..., np.ndarray]) -> Callable[[], Degradation]:
    return lambda: lambda y, sr, rng: channel(y, sr, rng=rng)


#: Every degradation step a spec may name, in the order help texts list them.
DEGRADATIONS: tuple[DegradationSpec, ...] = (
    DegradationSpec("clean", "unchanged", lambda: _identity),
    DegradationSpec("none", "unchanged (same as clean)", lambda: _identity),
    DegradationSpec("telephone", "300-3400 Hz, 8 kHz G.711 mu-law", _phone(telephone)),
    DegradationSpec("gsm", "300-3400 Hz, 8 kHz, GSM 06.10 mobile codec", _phone(gsm)),
    DegradationSpec("g721", "300-3400 Hz, 8 kHz, G.721 ADPCM (DECT)", _phone(g721)),
    DegradationSpec("voip", "8 kHz G.711 mu-law, the whole 0-4 kHz band", _phone(voip)),
    DegradationSpec("noise", "white noise", _noise("white"), arg="SNR in dB", example="noise:20"),
    DegradationSpec("pink", "1/f noise", _noise("pink"), arg="SNR in dB", example="pink:20"),
    DegradationSpec("brown", "1/f^2 noise", _noise("brown"), arg="SNR in dB", example="brown:20"),
    DegradationSpec(
        "line",
        "white noise below 4 kHz, as a phone line adds it",
        lambda snr: lambda y, sr, rng: add_line_noise(y, snr, rng=rng, sr=sr),
        arg="SNR in dB",
        example="line:30",
    ),
    DegradationSpec(
        "speed",
        "speed perturbation (tempo and pitch)",
        lambda factor: lambda y, sr, rng: speed(y, sr, factor),
        arg="factor",
        example="speed:0.9",
        check=_requires(lambda f: f > 0, "the speed factor must be > 0"),
    ),
    DegradationSpec(
        "crop",
        "a random 1 s to <s> s cut from the speech, without the silence around it",
        lambda max_s: lambda y, sr, rng: crop(y, sr, max_s, rng=rng),
        arg="s",
        example="crop:3",
        check=_requires(lambda s: s > 0, "the crop length must be > 0 s"),
    ),
    DegradationSpec(
        "gain",
        "louder or quieter",
        lambda db: lambda y, sr, rng: gain(y, db),
        arg="dB",
        example="gain:-12",
    ),
    DegradationSpec(
        "rate",
        "recorded at a lower sample rate",
        lambda rate: lambda y, sr, rng: lower_rate(y, sr, rate),
        arg="Hz",
        example="rate:11025",
        check=_requires(lambda r: r > 0, "the recording rate must be > 0 Hz"),
    ),
    DegradationSpec(
        "opus",
        "a VoIP call through the Opus codec (6-256)",
        lambda kbps: lambda y, sr, rng: opus(y, sr, kbps),
        arg="kbit/s",
        example="opus:16",
        check=opus_compression_level,
    ),
    DegradationSpec(
        "amr",
        "a mobile call through AMR-NB at one of its modes (needs PyAV)",
        lambda kbps: lambda y, sr, rng: amr(y, sr, kbps),
        arg="kbit/s",
        example="amr:12.2",
        check=amr_bit_rate,
    ),
    DegradationSpec(
        "loss",
        "lost 20 ms packets, concealed by repetition",
        lambda percent: lambda y, sr, rng: packet_loss(y, sr, percent, rng=rng),
        arg="percent",
        example="loss:5",
        check=_requires(lambda p: 0 <= p <= 100, "the packet loss must be 0-100 %"),
    ),
)
_BY_NAME = {d.name: d for d in DEGRADATIONS}


def _parse_one(step: str) -> Degradation:
    name, _, arg = step.partition(":")
    spec = _BY_NAME.get(name.strip().lower())
    if spec is None or (spec.arg is None and arg):
        names = ", ".join(d.usage for d in DEGRADATIONS)
        raise ValueError(f"unknown degradation {step!r}: use {names}, or several joined with '+'")
    if spec.arg is None:
        return spec.build()
    try:
        value = float(arg)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"bad degradation {step!r}: write {spec.usage}, e.g. {spec.example}")
    if spec.check is not None:
        try:
            spec.check(value)
        except ValueError as exc:
            raise ValueError(f"bad degradation {step!r}: {exc}") from None
    return spec.build(value)


def parse_degradation(spec: str) -> Degradation:
    """Turn a degradation spec into a function ``(y, sr, rng) -> y``.

    A spec is one step of :data:`DEGRADATIONS` (``telephone``, ``noise:20``, ...) or steps joined
    with ``+`` and applied left to right (``noise:20+telephone`` = a noisy room heard over the
    phone, ``telephone+line:30`` = a call with line noise). Case and spaces around names do not
    matter.

    Raises:
        ValueError: the spec is empty or a step is unknown or malformed.
    """
    steps = str(spec).split("+")
    if not spec or any(not s.strip() for s in steps):
        raise ValueError(f"empty degradation step in {spec!r}")
    funcs = [_parse_one(s.strip()) for s in steps]
    if len(funcs) == 1:
        return funcs[0]

    def chain(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        for f in funcs:
            y = f(y, sr, rng)
        return y

    return chain
