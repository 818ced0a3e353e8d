"""models/restore/damage.py: every damage form on seeded signals, alignment with the clean input, parsing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
from pedalchain.errors import ParameterError
from pedalchain.models.restore.damage import (
    DAMAGE_FORMS,
    LOWPASS_SHAPES,
    NOISE_KINDS,
    Bandwidth,
    Bits,
    Clip,
    DoubledSamples,
    Hold,
    Noise,
    parse_damage,
)

FS = 44100


def music(seconds: float = 1.0, channels: int = 2, seed: int = 0, fs: int = FS) -> np.ndarray:
    """Seeded full-band test audio: harmonic tones plus a little noise, (channels, n) float32, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * fs)) / fs
    out = np.zeros((channels, len(t)))
    for c in range(channels):
        for f in rng.uniform(100, 2000, size=4):
            for h in range(1, 8):
                out[c] += np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6)) / h
        out[c] += 0.3 * rng.standard_normal(len(t))
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def test_parse_all_forms() -> None:
    for spec, cls in [("doubled-samples", DoubledSamples), ("hold:3", Hold), ("bandwidth:11000", Bandwidth),
                      ("noise:20", Noise), ("bits:8", Bits), ("clip:6", Clip)]:
        damage = parse_damage(spec)
        assert isinstance(damage, cls)
        assert parse_damage(damage.spec).spec == damage.spec
    assert parse_damage("hold:3").factor == 3
    assert parse_damage("mp3:128").kbps == 128


@pytest.mark.parametrize("spec", ["hold", "hold:1", "hold:2.5", "fuzz:3", "bits:40", "clip:-3", "mp3:1000",
                                  "doubled-samples:2", "noise:abc", ""])
def test_bad_forms_are_refused_with_the_list(spec: str) -> None:
    with pytest.raises(ParameterError) as error:
        parse_damage(spec)
    assert error.value.where == "--damage"
    assert DAMAGE_FORMS in str(error.value)


@pytest.mark.parametrize("parity", [0, 1])
def test_doubled_samples(parity: int) -> None:
    clean = music()
    damage = DoubledSamples(parity=parity)
    y = damage.apply(clean, FS, np.random.default_rng(0))
    assert y.shape == clean.shape and y.dtype == np.float32
    assert np.array_equal(y[:, parity + 1::2][:, :100], y[:, parity::2][:, :100])
    assert np.array_equal(y[:, parity::2], clean[:, parity::2])
    assert damage.variant == f"parity {parity}"


def test_hold_phase_is_drawn_and_reproducible() -> None:
    clean = music()
    phases = set()
    for seed in range(8):
        damage = Hold(4)
        y = damage.apply(clean, FS, np.random.default_rng(seed))
        again = Hold(4).apply(clean, FS, np.random.default_rng(seed))
        assert np.array_equal(y, again)
        phase = int(damage.variant.split()[-1])
        phases.add(phase)
        changes = np.flatnonzero(np.any(np.diff(y, axis=1) != 0, axis=0)) + 1
        assert np.all((changes[changes > phase] - phase) % 4 == 0)
        assert np.array_equal(y[:, phase::4], clean[:, phase::4])
    assert len(phases) > 1


def band_power_db(x: np.ndarray, lo: float, hi: float, fs: int = FS) -> float:
    f, p = ss.welch(x, fs, nperseg=4096, axis=-1)
    return 10 * np.log10(p[..., (f >= lo) & (f < hi)].mean() + 1e-30)


@pytest.mark.parametrize("shape", LOWPASS_SHAPES)
def test_bandwidth_shapes_cut_and_stay_aligned(shape: str) -> None:
    clean = music(seed=1)
    y = Bandwidth(8000, shape=shape).apply(clean, FS, np.random.default_rng(0))
    assert y.shape == clean.shape
    # passband: the damaged signal matches the clean one lowpassed far below the cutoff (aligned, no delay)
    # (the soft pedalboard one-pole cascade sags below its corner: check it lower down)
    sos = ss.butter(8, 1000 if shape == "pedalboard" else 3000, fs=FS, output="sos")
    low_clean, low_damaged = ss.sosfiltfilt(sos, clean), ss.sosfiltfilt(sos, y)
    error = np.sum((low_clean - low_damaged) ** 2) / np.sum(low_clean ** 2)
    assert error < 1e-2, f"{shape}: passband error {error:.3g}"
    drop = band_power_db(clean, 12000, 20000) - band_power_db(y, 12000, 20000)
    assert drop > 25, f"{shape}: only {drop:.1f} dB less above 12 kHz"


def test_bandwidth_shape_is_drawn() -> None:
    shapes = set()
    for seed in range(30):
        damage = Bandwidth(10000)
        damage.apply(music(0.1), FS, np.random.default_rng(seed))
        shapes.add(damage.variant)
    assert len(shapes) >= 5


@pytest.mark.parametrize("fs", [44100, 48000, 32000])
@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_is_aligned_to_the_sample(fs: int, channels: int) -> None:
    clean = music(2.0, channels=channels, seed=2, fs=fs)
    y = parse_damage("mp3:192").apply(clean, fs, np.random.default_rng(0))
    assert y.shape == clean.shape
    a, b = clean.sum(axis=0).astype(np.float64), y.sum(axis=0).astype(np.float64)
    correlation = ss.correlate(b, a, mode="full", method="fft")
    lags = ss.correlation_lags(len(b), len(a), mode="full")
    assert lags[np.argmax(correlation)] == 0
    snr = 10 * np.log10(np.sum(clean ** 2) / np.sum((clean - y) ** 2))
    assert snr > 10, f"MP3 round trip only {snr:.1f} dB SNR: misaligned?"


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [0.0, 20.0])
def test_noise_snr(kind: str, snr_db: float) -> None:
    clean = music(seed=3)
    y = Noise(snr_db, kind=kind).apply(clean, FS, np.random.default_rng(1))
    noise = (y - clean).astype(np.float64)
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    if kind.startswith("hum"):
        base = 50 if kind == "hum50" else 60
        f, p = ss.welch(noise, FS, nperseg=FS, axis=-1)
        assert f[np.argmax(p.mean(axis=0)[:1000])] % base == 0


@pytest.mark.parametrize("dither", [False, True])
def test_bits(dither: bool) -> None:
    clean = music(seed=4)
    y = Bits(6, dither=dither).apply(clean, FS, np.random.default_rng(0))
    step = 2.0 ** -5
    assert np.allclose(y / step, np.round(y / step))
    error = np.abs(y.astype(np.float64) - clean)
    assert error.max() <= (1.5 * step if dither else 0.5 * step + 1e-7)
    if not dither:
        assert np.array_equal(y, np.round(clean.astype(np.float64) / step).astype(np.float32) * np.float32(step))


@pytest.mark.parametrize("over_db", [3.0, 6.0, 12.0])
def test_clip_threshold(over_db: float) -> None:
    clean = music(seed=5)
    damage = Clip(over_db)
    y = damage.apply(clean, FS, np.random.default_rng(0))
    threshold = np.abs(clean).max() * 10 ** (-over_db / 20)
    assert np.abs(y).max() == pytest.approx(threshold, rel=1e-6)
    inside = np.abs(clean) < threshold
    assert np.array_equal(y[inside], clean[inside])
    assert np.all(np.abs(y[~inside]) == np.float32(threshold))
