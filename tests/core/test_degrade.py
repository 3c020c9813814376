import numpy as np
import pytest
from click.testing import CliRunner

from core.cli import cli
from core.degrade import (
    DEGRADATIONS,
    EDGE_S,
    PACKET_S,
    PHONE_SR,
    active_power,
    add_line_noise,
    add_noise,
    amr,
    crop,
    g721,
    gain,
    gsm,
    lower_rate,
    mulaw_decode,
    mulaw_encode,
    opus,
    packet_loss,
    parse_degradation,
    speech_span,
    speed,
    telephone,
    voip,
)


def white(sr: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32)


def bursts(sr: int = 16_000, amp: float = 0.3) -> np.ndarray:
    """A 200 Hz tone on for 0.5 s, off for 0.5 s, four times: active power amp**2 / 2."""
    t = np.arange(sr // 2) / sr
    on = (amp * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    return np.concatenate([np.concatenate([on, np.zeros_like(on)]) for _ in range(4)])


def band_db(x: np.ndarray, ref: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Energy change of ``x`` against ``ref`` in the band [lo, hi) Hz, in dB."""
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    sel = (freqs >= lo) & (freqs < hi)
    e_x = np.sum(np.abs(np.fft.rfft(x))[sel] ** 2)
    e_ref = np.sum(np.abs(np.fft.rfft(ref))[sel] ** 2)
    return float(10 * np.log10(e_x / e_ref))


def psd_db(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Mean power per FFT bin of ``x`` in the band [lo, hi) Hz, in dB."""
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(10 * np.log10(np.mean(np.abs(np.fft.rfft(x))[(freqs >= lo) & (freqs < hi)] ** 2)))


@pytest.mark.parametrize("sr", [16_000, 48_000])
def test_telephone_keeps_the_phone_band_and_removes_the_rest(sr):
    y = white(sr)
    out = telephone(y, sr)
    assert out.shape == y.shape and out.dtype == np.float32
    assert abs(band_db(out, y, sr, 500, 3000)) < 1.0
    assert band_db(out, y, sr, 20, 150) < -25
    assert band_db(out, y, sr, 3900, 7500) < -30
    if sr > 16_000:
        assert band_db(out, y, sr, 8000, 20_000) < -30


def test_telephone_at_8k_and_on_short_input():
    y = white(8000, 0.5)
    assert telephone(y, 8000).shape == y.shape
    assert telephone(y[:10], 8000).shape == (10,)
    assert telephone(y[:0], 8000).shape == (0,)


def test_telephone_rejects_rates_below_8k():
    with pytest.raises(ValueError, match="8000"):
        telephone(white(4000), 4000)


@pytest.mark.parametrize("sr", [16_000, 48_000])
def test_voip_keeps_the_whole_band_below_4k(sr):
    y = white(sr)
    out = voip(y, sr)
    assert out.shape == y.shape and out.dtype == np.float32
    assert abs(band_db(out, y, sr, 100, 3800)) < 1.0  # the fundamental region stays
    assert band_db(out, y, sr, 4200, 7500) < -30
    np.testing.assert_array_equal(out, voip(y, sr))
    assert voip(y[:0], sr).shape == (0,)


def test_voip_is_the_telephone_codec_without_the_band_pass():
    y = voiced()
    assert np.array_equal(voip(y, 16_000), voip(y, 16_000))
    low = band_db(voip(y, 16_000), telephone(y, 16_000), 16_000, 100, 250)
    assert low > 20  # telephone removed the 150 Hz fundamental; voip kept it


@pytest.mark.parametrize(("rate", "sr"), [(8_000, 16_000), (11_025, 16_000), (12_000, 48_000)])
def test_lower_rate_keeps_the_band_below_half_the_rate(rate, sr):
    y = white(sr)
    out = lower_rate(y, sr, rate)
    assert out.shape == y.shape and out.dtype == np.float32
    assert abs(band_db(out, y, sr, 100, 0.45 * rate)) < 1.0
    assert band_db(out, y, sr, 0.55 * rate, sr / 2) < -30


def test_lower_rate_at_or_above_the_rate_is_identity():
    y = white(16_000, 0.5)
    np.testing.assert_array_equal(lower_rate(y, 16_000, 16_000), y)
    np.testing.assert_array_equal(lower_rate(y, 16_000, 44_100), y)
    assert lower_rate(y[:0], 16_000, 8_000).shape == (0,)
    with pytest.raises(ValueError, match="positive"):
        lower_rate(y, 16_000, 0)


@pytest.mark.parametrize("sr", [8_000, 16_000, 44_100])
def test_opus_loses_more_at_lower_bitrates_and_keeps_time_alignment(sr):
    y, half = voiced(sr, 2.0), sr // 2
    errors = []
    for kbps in (8, 24, 64):
        out = opus(y, sr, kbps)
        assert out.shape == y.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out, opus(y, sr, kbps))  # deterministic
        lag = np.correlate(out[:half], y[:half], "full").argmax() - (half - 1)
        assert abs(lag) <= 2  # the decoder drops the encoder's pre-skip
        errors.append(10 * np.log10(np.sum(y**2) / np.sum((out - y) ** 2)))
    assert 3 < errors[0] < errors[1] < errors[2]
    assert opus(y[:0], sr, 16).shape == (0,)


@pytest.mark.parametrize("percent", [5.0, 20.0, 60.0])
def test_packet_loss_repeats_the_last_packet_then_fades_to_silence(percent):
    sr = 8_000
    y = white(sr, 20.0)  # 1000 packets of 20 ms, none equal to another
    out = packet_loss(y, sr, percent, rng=np.random.default_rng(1))
    assert out.shape == y.shape and out.dtype == np.float32
    size, edge = int(PACKET_S * sr), int(EDGE_S * sr)
    inner = slice(edge, size - edge)  # the seams next to a lost packet are faded
    packets, received = out.reshape(-1, size), y.reshape(-1, size)
    lost = np.any(packets[:, inner] != received[:, inner], axis=1)
    assert abs(lost.mean() * 100 - percent) < 4  # binomial spread over 1000 packets: ~1.5
    last, run = np.zeros(size, dtype=np.float32), 0
    for i in range(len(packets)):
        if not lost[i]:
            last, run = received[i], 0
            continue
        run += 1
        gain = {1: 1.0, 2: 0.5, 3: 0.25}.get(run, 0.0)
        np.testing.assert_array_equal(packets[i, inner], gain * last[inner])
        assert abs(packets[i, 0]) < 0.01 * np.abs(y).max()  # faded in from zero at the seam
        if i > 0:
            assert abs(packets[i - 1, -1]) < 0.01 * np.abs(y).max()  # and faded out before it


def test_packet_loss_keeps_a_narrowband_call_narrowband():
    """The seams fade instead of clicking: a click spreads energy above a call's 4 kHz, which
    would send the call to the wideband model."""
    sr = 16_000
    call = voip(white(sr, 10.0), sr)
    lossy = packet_loss(call, sr, 15.0, rng=np.random.default_rng(2))
    # white noise through the call: -76 dB above 4.2 kHz against the phone band; with the
    # seams faded -65 dB at 15 % loss, with hard seams -34 dB
    assert psd_db(lossy, sr, 4_200, 8_000) - psd_db(lossy, sr, 300, 3_400) < -55


def test_packet_loss_edges():
    y = white(16_000, 1.05)  # not a whole number of packets
    np.testing.assert_array_equal(packet_loss(y, 16_000, 0.0, rng=np.random.default_rng(0)), y)
    assert not packet_loss(y, 16_000, 100.0, rng=np.random.default_rng(0)).any()
    assert packet_loss(np.zeros(0), 16_000, 50.0).size == 0
    with pytest.raises(ValueError, match="0-100"):
        packet_loss(y, 16_000, 150.0)


def test_opus_narrows_the_band_itself_at_low_bitrates():
    y = white(16_000)
    assert band_db(opus(y, 16_000, 8), y, 16_000, 4400, 7500) < -30  # narrowband mode
    assert band_db(opus(y, 16_000, 24), y, 16_000, 4400, 7500) > -6  # wideband
    with pytest.raises(ValueError, match="6-256"):
        opus(y, 16_000, 4)


def voiced(sr: int = 16_000, seconds: float = 1.0) -> np.ndarray:
    """A 150 Hz harmonic tone with vibrato: speech-like input for a speech codec."""
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(150 + 10 * np.sin(2 * np.pi * 5 * t)) / sr
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 20))).astype(np.float32)


@pytest.mark.parametrize(("codec", "worst_db", "best_db"), [(gsm, 5, 25), (g721, 10, 30)])
def test_codec_channels_are_phone_band_codecs_lossier_than_mulaw(codec, worst_db, best_db):
    y = voiced()
    out = codec(y, 16_000)
    assert out.shape == y.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, codec(y, 16_000))  # deterministic
    assert psd_db(out, 16_000, 4100, 7500) < psd_db(out, 16_000, 300, 3400) - 40  # 8 kHz
    line = telephone(y, 16_000)
    error_db = 10 * np.log10(np.sum(line**2) / np.sum((out - line) ** 2))
    assert worst_db < error_db < best_db  # the same call through a lossier codec (mu-law: 38 dB)
    assert codec(y[:0], 16_000).shape == (0,)


def test_amr_is_a_phone_band_codec_lossier_at_lower_modes_and_time_aligned():
    y = voiced()
    line = telephone(y, 16_000)
    errors = []
    for kbps in (4.75, 7.95, 12.2):
        out = amr(y, 16_000, kbps)
        assert out.shape == y.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out, amr(y, 16_000, kbps))  # deterministic
        assert psd_db(out, 16_000, 4100, 7500) < psd_db(out, 16_000, 300, 3400) - 40  # 8 kHz
        lag = np.correlate(out[:8000], line[:8000], "full").argmax() - 7999
        assert abs(lag) <= 1  # the encoder's 5 ms look-ahead is removed
        errors.append(10 * np.log10(np.sum(line**2) / np.sum((out - line) ** 2)))
    # a CELP codec keeps the spectrum, not the waveform: 6-8 dB here (GSM 06.10: 14)
    assert 3 < errors[0] < errors[1] < errors[2] < 12
    assert amr(y[:0], 16_000, 12.2).shape == (0,)
    with pytest.raises(ValueError, match="4.75, 5.15"):
        amr(y, 16_000, 13)


def test_mulaw_round_trip_error_is_small():
    x = np.linspace(-1, 1, 20_001)
    codes = mulaw_encode(x)
    assert codes.dtype == np.int8 and codes.min() >= -127 and codes.max() <= 127
    back = mulaw_decode(codes)
    assert np.max(np.abs(back - x)) < 0.025
    # Logarithmic: error relative to the sample stays near 3% above the linear segment.
    loud = np.abs(x) > 0.05
    assert np.max(np.abs(back - x)[loud] / np.abs(x)[loud]) < 0.035
    # About 38 dB SNR on a speech-level signal, as G.711.
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    err = mulaw_decode(mulaw_encode(tone)) - tone
    assert 10 * np.log10(np.sum(tone**2) / np.sum(err**2)) > 35


def test_mulaw_saturates_out_of_range_samples():
    assert mulaw_decode(mulaw_encode(np.array([3.0, -3.0]))) == pytest.approx([1.0, -1.0])


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 35.0])
def test_add_noise_hits_the_snr_against_active_power(snr_db, color):
    y = bursts()
    out = add_noise(y, snr_db, rng=np.random.default_rng(1), sr=16_000, color=color)
    # Half the signal is silence: the SNR is against the power while the tone is on.
    measured = 10 * np.log10((0.3**2 / 2) / np.mean((out - y) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_active_power_ignores_pauses():
    assert active_power(bursts(), 16_000) == pytest.approx(0.3**2 / 2, rel=0.05)
    assert active_power(np.zeros(1000)) == 0.0


def test_add_noise_is_deterministic_per_seed_and_pure():
    y = bursts()
    copy = y.copy()
    a = add_noise(y, 10, rng=np.random.default_rng(7))
    b = add_noise(y, 10, rng=np.random.default_rng(7))
    c = add_noise(y, 10, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(y, copy)


@pytest.mark.parametrize(("color", "db_per_decade"), [("pink", 10.0), ("brown", 20.0)])
def test_coloured_noise_power_falls_per_decade(color, db_per_decade):
    z = np.zeros(1 << 16, dtype=np.float32)
    z[::2] = 0.1  # a level to measure the SNR against
    noise = add_noise(z, 0.0, rng=np.random.default_rng(3), color=color) - z
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(noise.size, 1 / 16_000)
    band = lambda lo: power[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
    for lo in (100.0, 300.0):  # each decade down in power per Hz
        assert 10 * np.log10(band(lo) / band(10 * lo)) == pytest.approx(db_per_decade, abs=1.0)
    white = add_noise(z, 0.0, rng=np.random.default_rng(3)) - z
    assert np.mean(noise**2) == pytest.approx(np.mean(white**2), rel=1e-3)  # same SNR
    with pytest.raises(ValueError, match="color"):
        add_noise(z, 0.0, rng=np.random.default_rng(3), color="blue")


@pytest.mark.parametrize("sr", [8_000, 16_000, 48_000])
@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_line_noise_hits_the_snr_and_stays_below_4k(sr, snr_db):
    y = bursts(sr)
    noise = add_line_noise(y, snr_db, rng=np.random.default_rng(2), sr=sr).astype(np.float64) - y
    measured = 10 * np.log10((0.3**2 / 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.5)
    if sr > PHONE_SR:  # flat inside the narrow band, nothing above it
        assert psd_db(noise, sr, 4300, sr / 2) < psd_db(noise, sr, 1000, 3000) - 40
        assert abs(psd_db(noise, sr, 100, 300) - psd_db(noise, sr, 3500, 3800)) < 3
    with pytest.raises(ValueError, match="at least 8000"):
        add_line_noise(white(4000), 10, rng=np.random.default_rng(0), sr=4000)


def test_add_noise_leaves_silence_alone_and_rejects_bad_snr():
    z = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(add_noise(z, 10, rng=np.random.default_rng(0)), z)
    with pytest.raises(ValueError):
        add_noise(bursts(), float("nan"), rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    "spec",
    ["clean", "none", "telephone", "noise:20", "noise:10", "noise:-5", "pink:10", "brown:10"]
    + ["line:30", "telephone+line:20", "gsm", "noise:20+gsm", "g721", "voip", "voip+line:30"]
    + ["rate:8000", "rate:11025", "noise:20+rate:12000", "opus:12", "telephone+opus:16"]
    + ["loss:10", "voip+loss:5", "opus:16+loss:20", "amr:12.2", "noise:20+amr:4.75"],
)
def test_parse_degradation_is_deterministic(spec):
    f = parse_degradation(spec)
    y = white(16_000, 0.5)
    a = f(y, 16_000, np.random.default_rng(3))
    b = f(y, 16_000, np.random.default_rng(3))
    assert a.shape == y.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    if spec in ("clean", "none"):
        np.testing.assert_array_equal(a, y)
    else:
        assert not np.array_equal(a, y)


def test_parse_degradation_chains_left_to_right():
    y = white(16_000, 0.5)
    chained = parse_degradation(" Noise:20 + telephone ")(y, 16_000, np.random.default_rng(4))
    by_hand = telephone(add_noise(y, 20, rng=np.random.default_rng(4), sr=16_000), 16_000)
    np.testing.assert_array_equal(chained, by_hand)


@pytest.mark.parametrize(
    "spec",
    ["", "noise", "noise:", "noise:x", "noise:inf", "reverb", "telephone:3", "+", "clean+"]
    + ["speed", "speed:0", "speed:-1", "speed:x", "gain", "gain:nan", "gain:loud", "line:"]
    + ["voip:1", "rate", "rate:0", "rate:-8000", "rate:x", "opus", "opus:2", "opus:1000"]
    + ["loss", "loss:x", "loss:-1", "loss:101", "amr", "amr:13", "amr:x"]
    + ["crop", "crop:0", "crop:-1", "crop:x"],
)
def test_parse_degradation_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="degradation"):
        parse_degradation(spec)


@pytest.mark.parametrize("entry", DEGRADATIONS, ids=lambda d: d.name)
def test_every_table_entry_parses_and_degrades(entry):
    spec = entry.name if entry.arg is None else entry.example
    if entry.name == "amr":
        pytest.importorskip("av")
    assert spec.split(":")[0] == entry.name
    y = white(16_000, 0.5)
    out = parse_degradation(spec.upper())(y, 16_000, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.size > 0


def test_unknown_and_malformed_steps_name_the_table():
    with pytest.raises(ValueError, match="unknown degradation 'reverb'") as unknown:
        parse_degradation("reverb")
    for entry in DEGRADATIONS:
        assert entry.usage in str(unknown.value)
    with pytest.raises(ValueError, match=r"bad degradation 'noise:x': write noise:<SNR in dB>"):
        parse_degradation("noise:x")
    with pytest.raises(ValueError, match="bad degradation 'loss:101': the packet loss"):
        parse_degradation("loss:101")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_help_lists_every_degradation(command):
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for entry in DEGRADATIONS:
        assert any(
            line.strip().startswith(entry.usage + " ") and line.endswith(entry.description)
            for line in lines
        ), entry.usage


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_speed_scales_duration_and_pitch(factor):
    sr = 16_000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = parse_degradation(f"speed:{factor}")(tone, sr, np.random.default_rng(0))
    assert out.dtype == np.float32
    assert abs(out.size - sr / factor) <= 2  # Kaldi-style: the clip gets shorter when faster
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.fft.rfftfreq(out.size, 1 / sr)[np.argmax(spectrum)]
    assert peak_hz == pytest.approx(440 * factor, abs=3)  # and the pitch goes up with it


def test_speed_one_and_empty_are_identity_and_input_is_untouched():
    y = white(16_000, 0.5)
    before = y.copy()
    np.testing.assert_array_equal(speed(y, 16_000, 1.0), y)
    assert speed(np.zeros(0, np.float32), 16_000, 0.9).size == 0
    speed(y, 16_000, 0.9)
    np.testing.assert_array_equal(y, before)


@pytest.mark.parametrize("db", [-12.0, -6.0, 6.0])
def test_gain_scales_by_decibels(db):
    y = white(16_000, 0.5)
    out = parse_degradation(f"gain:{db:g}")(y, 16_000, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == y.shape
    assert 10 * np.log10(np.mean(out**2) / np.mean(y**2)) == pytest.approx(db, abs=1e-3)
    np.testing.assert_allclose(gain(y, 0.0), y)


def utterance(sr: int = 16_000, before: float = 1.0, talk: float = 4.0, after: float = 1.0):
    """Silence, white noise as speech, silence: a clip as RAVDESS records it."""
    quiet = np.zeros(int(sr * before), np.float32)
    return np.concatenate([quiet, white(sr, talk, seed=5), np.zeros(int(sr * after), np.float32)])


def test_speech_span_leaves_out_the_silence_around_the_utterance():
    assert speech_span(utterance(), 16_000) == (16_000, 80_000)
    assert speech_span(np.zeros(16_000, np.float32), 16_000) == (0, 16_000)


def test_crop_cuts_one_to_max_seconds_from_the_speech_deterministically():
    y = utterance()
    before = y.copy()
    lengths = set()
    for seed in range(40):
        a = crop(y, 16_000, 3.0, rng=np.random.default_rng(seed))
        b = parse_degradation("crop:3")(y, 16_000, np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and 16_000 <= a.size <= 48_000
        at = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(y, 64)
                                       == a[:64], axis=1))[0])  # fmt: skip
        assert 16_000 <= at and at + a.size <= 80_000  # inside the speech, no silence
        lengths.add(a.size)
    assert len(lengths) > 30  # the length is drawn, not fixed
    np.testing.assert_array_equal(y, before)


def test_crop_of_short_speech_or_a_short_signal():
    short = utterance(talk=0.5)  # 0.5 s of speech in 2.5 s
    a = crop(short, 16_000, 1.0, rng=np.random.default_rng(0))
    assert a.size == 16_000
    np.testing.assert_array_equal(a, short[12_000:28_000])  # centred on the speech
    y = white(16_000, 0.5)
    np.testing.assert_array_equal(crop(y, 16_000, 3.0, rng=np.random.default_rng(0)), y)
    assert crop(y, 16_000, 0.25, rng=np.random.default_rng(0)).size == 4_000
    with pytest.raises(ValueError, match="crop length"):
        crop(y, 16_000, 0.0, rng=np.random.default_rng(0))
