"""Tests for pedalchain.chains.loudness: BS.1770-4 loudness against pyloudnorm, true peak, streaming.

scipy's lfilter builds the references; the module itself is numpy-only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pedalchain.chains import loudness
from pedalchain.chains.loudness import LoudnessMeter, k_weighting_biquads, loudness_gain_db
from scipy import signal

pyln = pytest.importorskip("pyloudnorm")

RATES = (8000, 44100, 48000, 96000)
SURROUND_DB = 10.0 * math.log10(1.41)


def pink(rng: np.random.Generator, channels: int, n: int, peak: float = 0.3) -> np.ndarray:
    """Pink-ish noise (1/f power), independent per channel, scaled to ``peak``."""
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    freqs = np.arange(spectrum.shape[1], dtype=np.float64)
    freqs[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(freqs), n, axis=1)
    return (peak * x / np.abs(x).max()).astype(np.float32)


def sines(rng: np.random.Generator, channels: int, n: int, fs: float) -> np.ndarray:
    """Steady sines per channel (100 Hz .. 0.4 fs), random phases and levels."""
    t = np.arange(n) / fs
    freqs = [100.0, 997.0, 3000.0, 0.4 * fs, 250.0]
    rows = [rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * freqs[c % 5] * t + rng.uniform(0, 2 * np.pi))
            for c in range(channels)]
    return np.array(rows, dtype=np.float32)


def music(rng: np.random.Generator, channels: int, n: int, fs: float) -> np.ndarray:
    """Harmonic tones plus noise with loud, quiet (-40 dB), medium and silent sections (gating matters)."""
    t = np.arange(n) / fs
    envelope = np.interp(t, [0, 2.0, 2.05, 3.5, 3.55, 5.0, 5.05, 1e9],
                         [1.0, 1.0, 0.01, 0.01, 0.4, 0.4, 0.0, 0.0])
    rows = []
    for _ in range(channels):
        tone = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                   for a, f in ((0.3, 110.0), (0.15, 440.0), (0.08, 2500.0), (0.04, min(6000.0, 0.4 * fs))))
        rows.append(envelope * (tone + 0.05 * rng.standard_normal(n)))
    return np.array(rows, dtype=np.float32)


def reference_lufs(x: np.ndarray, fs: float) -> float:
    return float(pyln.Meter(fs).integrated_loudness(x.T.astype(np.float64)))


def measure(x: np.ndarray, fs: float, block: int | None = None) -> LoudnessMeter:
    meter = LoudnessMeter(fs, x.shape[0])
    if block is None:
        meter.add(x)
    else:
        for start in range(0, x.shape[1], block):
            meter.add(x[:, start:start + block])
    return meter


def random_split(rng: np.random.Generator, n: int, largest: int) -> list[int]:
    """Cut points for blocks of random length, including 0- and 1-sample blocks."""
    cuts, pos = [0], 0
    while pos < n:
        pos = min(n, pos + int(rng.choice([0, 1, 2, int(rng.integers(3, largest))])))
        cuts.append(pos)
    return cuts


def db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude)


# --- loudness against pyloudnorm -------------------------------------------------------------------------


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("channels", (1, 2, 5))
@pytest.mark.parametrize("kind", ("pink", "sines", "music"))
def test_matches_pyloudnorm(fs: int, channels: int, kind: str) -> None:
    rng = np.random.default_rng(1000 * channels + fs // 1000 + len(kind))
    n = int(6.37 * fs)  # not a whole number of 100 ms steps
    if kind == "pink":
        x = pink(rng, channels, n)
    elif kind == "sines":
        x = sines(rng, channels, n, fs)
    else:
        x = music(rng, channels, n, fs)
    expected = reference_lufs(x, fs)
    assert measure(x, fs, block=4096).integrated_lufs() == pytest.approx(expected, abs=0.1)
    # tighter than the requirement: only pyloudnorm's trailing partial block differs
    assert measure(x, fs).integrated_lufs() == pytest.approx(expected, abs=0.02)


def test_music_signal_exercises_both_gates() -> None:
    fs = 48000
    x = music(np.random.default_rng(5), 2, int(6.37 * fs), fs)
    ref = pyln.Meter(fs)
    integrated = ref.integrated_loudness(x.T.astype(np.float64))
    blocks = np.asarray(ref.blockwise_loudness)
    assert (blocks < -70).any()  # silent tail: absolute gate
    assert ((blocks > -70) & (blocks < integrated - 10)).any()  # quiet section: relative gate
    assert measure(x, fs).integrated_lufs() == pytest.approx(integrated, abs=0.02)


def test_whole_100ms_steps_match_pyloudnorm_exactly() -> None:
    fs = 44100
    rng = np.random.default_rng(11)
    for seconds in (0.4, 0.5, 2.0):
        x = pink(rng, 2, int(round(seconds * fs)))
        assert measure(x, fs).integrated_lufs() == pytest.approx(reference_lufs(x, fs), abs=1e-6)


def test_only_complete_blocks_count() -> None:
    """BS.1770-4 gates complete 400 ms blocks: 0.46 s reads like its first 0.4 s (pyloudnorm adds one)."""
    fs = 48000
    x = pink(np.random.default_rng(12), 1, int(0.46 * fs))
    assert measure(x, fs).integrated_lufs() == pytest.approx(
        measure(x[:, :int(0.4 * fs)], fs).integrated_lufs(), abs=1e-9)


def test_full_scale_997hz_sine_reads_about_minus_3_lufs() -> None:
    fs = 48000
    x = np.sin(2 * np.pi * 997 * np.arange(5 * fs) / fs)[None, :]
    assert measure(x, fs).integrated_lufs() == pytest.approx(-3.01, abs=0.05)  # -3.05, as pyloudnorm


def test_k_weighting_coefficients_match_pyloudnorm() -> None:
    for fs in (8000, 22050, 44100, 48000, 96000, 192000):
        ref = pyln.Meter(fs)._filters
        ours = k_weighting_biquads(fs)
        for (b, a), stage in zip(ours, ("high_shelf", "high_pass"), strict=True):
            np.testing.assert_allclose(b, ref[stage].b, rtol=1e-12)
            np.testing.assert_allclose(a, ref[stage].a, rtol=1e-12)


@pytest.mark.parametrize("fs", (8000, 48000, 192000))
def test_block_iir_matches_lfilter_with_carried_state(fs: int) -> None:
    rng = np.random.default_rng(fs)
    sections = k_weighting_biquads(fs)
    x = rng.standard_normal((3, 50_000))
    expected = x
    for b, a in sections:
        expected = signal.lfilter(b, a, expected, axis=1)
    iir = loudness._BlockIIR(sections, 3, 64)
    cuts = random_split(rng, x.shape[1], 3000)
    got = np.concatenate([iir.process(x[:, lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
                          if hi > lo], axis=1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


# --- channel layouts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "index", "offset_db"), [
    (2, 1, 0.0), (5, 2, 0.0), (5, 3, SURROUND_DB), (5, 4, SURROUND_DB),
    (6, 3, None), (6, 4, SURROUND_DB), (6, 5, SURROUND_DB), (7, 6, SURROUND_DB),
    (8, 3, None), (8, 6, SURROUND_DB), (8, 7, SURROUND_DB), (8, 2, 0.0),
])
def test_channel_weights(channels: int, index: int, offset_db: float | None) -> None:
    """A signal in one channel reads mono loudness + 10 log10(G_i); the LFE (index 3 of 6-8) is ignored."""
    fs = 44100
    mono = pink(np.random.default_rng(3), 1, 2 * fs)
    x = np.zeros((channels, mono.shape[1]), dtype=np.float32)
    x[index] = mono[0]
    reading = measure(x, fs).integrated_lufs()
    if offset_db is None:
        assert reading == -math.inf
    else:
        assert reading == pytest.approx(measure(mono, fs).integrated_lufs() + offset_db, abs=1e-9)


# --- streaming --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fs", "channels"), [(44100, 2), (8000, 5), (11025, 1), (96000, 8)])
def test_result_does_not_depend_on_block_split(fs: int, channels: int) -> None:
    rng = np.random.default_rng(fs + channels)
    x = music(rng, channels, int(2.7 * fs), fs)
    whole = measure(x, fs)
    for largest in (50, 5000, 40_000):
        meter = LoudnessMeter(fs, channels)
        cuts = random_split(rng, x.shape[1], largest)
        for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            meter.add(x[:, lo:hi])
            if i % 97 == 0:  # readings in between must not disturb the stream
                meter.integrated_lufs()
                meter.true_peak_dbtp()
        assert meter.integrated_lufs() == pytest.approx(whole.integrated_lufs(), abs=1e-9)
        assert meter.true_peak_dbtp() == pytest.approx(whole.true_peak_dbtp(), abs=1e-9)
        assert meter.sample_peak_dbfs() == whole.sample_peak_dbfs()


def test_long_stream_grows_storage_and_stays_steady() -> None:
    """Five minutes fed block by block (never held whole) read like a short excerpt of the same tone."""
    fs, block = 8000, 8000
    tone = 0.25 * np.sin(2 * np.pi * 440 * np.arange(block) / fs)[None, :]  # 440 Hz: whole periods per block
    meter = LoudnessMeter(fs, 1)
    for _ in range(300):
        meter.add(tone)
    assert meter.integrated_lufs() == pytest.approx(reference_lufs(np.tile(tone, 10), fs), abs=0.01)
    assert meter.sample_peak_dbfs() == pytest.approx(db(0.25), abs=1e-6)


def test_reset_forgets_everything() -> None:
    fs = 48000
    rng = np.random.default_rng(4)
    loud, quiet = pink(rng, 2, fs, peak=0.9), pink(rng, 2, fs, peak=0.01)
    meter = measure(loud, fs)
    meter.reset()
    meter.add(quiet)
    fresh = measure(quiet, fs)
    assert meter.integrated_lufs() == pytest.approx(fresh.integrated_lufs(), abs=1e-12)
    assert meter.true_peak_dbtp() == fresh.true_peak_dbtp()
    assert meter.sample_peak_dbfs() == fresh.sample_peak_dbfs()


def test_silence_and_too_short() -> None:
    fs = 44100
    silent = measure(np.zeros((2, 3 * fs), dtype=np.float32), fs)
    assert silent.integrated_lufs() == -math.inf
    assert silent.true_peak_dbtp() == -math.inf
    assert silent.sample_peak_dbfs() == -math.inf

    empty = LoudnessMeter(fs, 2)
    empty.add(np.zeros((2, 0), dtype=np.float32))
    assert empty.integrated_lufs() == -math.inf
    assert empty.true_peak_dbtp() == -math.inf

    short = measure(pink(np.random.default_rng(2), 2, int(0.39 * fs), peak=0.5), fs)
    assert short.integrated_lufs() == -math.inf  # no complete 400 ms block
    assert short.sample_peak_dbfs() == pytest.approx(db(0.5), abs=1e-6)

    below_gate = measure(pink(np.random.default_rng(2), 2, 2 * fs, peak=1e-5), fs)
    assert below_gate.integrated_lufs() == -math.inf  # every block under -70 LUFS
    assert math.isfinite(below_gate.true_peak_dbtp())


# --- true peak --------------------------------------------------------------------------------------------


def quarter_rate_sine(fs: float, amplitude: float, seconds: float, fade: bool) -> np.ndarray:
    """fs/4 sine at 45 degrees: samples sit at +-amplitude/sqrt(2), 3.01 dB under the true peak."""
    n = int(seconds * fs)
    t = np.arange(n)
    x = amplitude * np.sin(np.pi / 2 * t + np.pi / 4)
    if fade:
        x *= np.minimum(1.0, np.minimum(t, n - 1 - t) / (0.05 * fs))
    return x[None, :]


@pytest.mark.parametrize("fs", (8000, 44100, 48000, 96000))
def test_intersample_peak_of_quarter_rate_sine(fs: int) -> None:
    amplitude = 0.5
    faded = measure(quarter_rate_sine(fs, amplitude, 1.0, fade=True), fs)
    assert faded.sample_peak_dbfs() == pytest.approx(db(amplitude) - 3.0103, abs=0.01)
    assert faded.true_peak_dbtp() == pytest.approx(db(amplitude), abs=0.01)
    abrupt = measure(quarter_rate_sine(fs, amplitude, 1.0, fade=False), fs, block=333)
    assert abrupt.true_peak_dbtp() == pytest.approx(db(amplitude), abs=0.5)


def test_no_oversampling_at_192k() -> None:
    meter = measure(quarter_rate_sine(192000, 0.5, 0.5, fade=True), 192000)
    assert meter.true_peak_dbtp() == meter.sample_peak_dbfs()


@pytest.mark.parametrize("fs", (44100, 96000))
def test_true_peak_against_fine_resampling(fs: int) -> None:
    """Band-limited noise (< 0.3 fs): 4x/2x reading sits just under the 32x-resampled peak."""
    rng = np.random.default_rng(fs)
    x = signal.lfilter(signal.firwin(255, 0.6), 1.0, rng.standard_normal((2, fs // 2)), axis=1)
    x *= np.hanning(x.shape[1])
    x = (0.8 * x / np.abs(x).max()).astype(np.float64)
    fine = db(float(np.abs(signal.resample_poly(x, 32, 1, axis=1)).max()))
    meter = measure(x, fs, block=1000)
    assert fine - 0.25 <= meter.true_peak_dbtp() <= fine + 0.02
    assert meter.true_peak_dbtp() >= meter.sample_peak_dbfs()


def test_true_peak_is_max_over_channels() -> None:
    fs = 48000
    x = np.zeros((5, fs), dtype=np.float32)
    x[3] = quarter_rate_sine(fs, 0.25, 1.0, fade=True)[0]
    x[0] = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(fs) / fs)
    assert measure(x, fs).true_peak_dbtp() == pytest.approx(db(0.25), abs=0.01)


# --- gain --------------------------------------------------------------------------------------------------


def test_loudness_gain_db() -> None:
    assert loudness_gain_db(-20.0, -10.0, -14.0) == pytest.approx(6.0)  # peak ends at -4 dBTP
    assert loudness_gain_db(-20.0, -3.0, -14.0) == pytest.approx(2.0)  # limited by the -1 dBTP ceiling
    assert loudness_gain_db(-20.0, -3.0, -14.0, ceiling_dbtp=-2.0) == pytest.approx(1.0)
    assert loudness_gain_db(-8.0, -0.5, -14.0) == pytest.approx(-6.0)  # turning down
    assert loudness_gain_db(-16.0, 0.5, -14.0) == pytest.approx(-1.5)  # peak over ceiling: turn down
    assert loudness_gain_db(-math.inf, -math.inf, -14.0) == 0.0
    assert loudness_gain_db(-math.inf, -6.0, -14.0) == 0.0
    assert loudness_gain_db(-30.0, -math.inf, -14.0) == pytest.approx(16.0)


@pytest.mark.parametrize(("args", "name"), [
    ((math.nan, -1.0, -14.0), "measured_lufs"), ((math.inf, -1.0, -14.0), "measured_lufs"),
    ((-20.0, math.nan, -14.0), "true_peak_dbtp"), ((-20.0, -1.0, math.nan), "target_lufs"),
    ((-20.0, -1.0, -math.inf), "target_lufs"), ((-20.0, -1.0, -14.0, math.nan), "ceiling_dbtp"),
])
def test_loudness_gain_db_rejects_bad_values(args: tuple[float, ...], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        loudness_gain_db(*args)


def test_gain_brings_signal_to_target() -> None:
    fs = 48000
    x = pink(np.random.default_rng(8), 2, 3 * fs, peak=0.05)
    meter = measure(x, fs)
    gain = loudness_gain_db(meter.integrated_lufs(), meter.true_peak_dbtp(), -23.0)
    after = measure((x * 10 ** (gain / 20)).astype(np.float32), fs)
    assert after.integrated_lufs() == pytest.approx(-23.0, abs=1e-3)
    assert after.true_peak_dbtp() <= -1.0 + 1e-3


# --- argument checking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fs", (7999, 192001, 0, -48000, math.nan, "48000", True, None))
def test_rejects_bad_sample_rate(fs: object) -> None:
    with pytest.raises(ValueError, match=r"sample_rate.*8000, 192000"):
        LoudnessMeter(fs, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("channels", (0, 9, -1, 2.0, True, "2", None))
def test_rejects_bad_channel_count(channels: object) -> None:
    with pytest.raises(ValueError, match=r"num_channels.*\[1, 8\]"):
        LoudnessMeter(48000, channels)  # type: ignore[arg-type]


@pytest.mark.parametrize("block", [
    np.zeros(100, dtype=np.float32),
    np.zeros((100, 2), dtype=np.float32),
    np.zeros((3, 100), dtype=np.float32),
    np.zeros((2, 10, 1), dtype=np.float32),
    [[0.0, 0.0], [0.0, 0.0]],
    np.zeros((2, 100), dtype=np.int16),
    np.full((2, 100), np.nan, dtype=np.float32),
    np.full((2, 100), np.inf),
])
def test_rejects_bad_block(block: object) -> None:
    meter = LoudnessMeter(48000, 2)
    with pytest.raises(ValueError, match="block"):
        meter.add(block)  # type: ignore[arg-type]
    assert meter.sample_peak_dbfs() == -math.inf  # nothing was consumed


