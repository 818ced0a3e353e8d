"""``restorer: doubled-samples`` (effects/restorers/doubled.py) with the shipped model: low-band exactness against
scipy's resample_poly, chunk invariance, the transition band, detection-driven regions, parity, stereo, wet,
parameter errors and the shipped preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf
from helpers import RANDOM, assert_close, noise_signal, stream
from pedalchain.chains.yaml_io import load_chain
from pedalchain.effects.restorers import restorer_class
from pedalchain.effects.restorers.doubled import (
    DEFAULT_WEIGHTS,
    HALF_TAPS,
    DoubledSampleRepair,
    halfband_filter,
    load_model,
)
from pedalchain.errors import ParameterError

SR = 44100
PRESET = Path(__file__).resolve().parents[1] / "chains" / "presets" / "repair.yaml"


def music(seconds: float = 3.0, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """Seeded stereo test material with content up to Nyquist: decaying harmonic tones over coloured noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros((2, n))
    for start in np.arange(0, seconds, 0.4):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 4), 0.0)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, int(20000 / f0)))
        out += env * tone * rng.uniform(0.5, 1.0, (2, 1))
    out += 0.02 * noise_signal(2, n, seed)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def doubled(clean: np.ndarray, parity: int) -> np.ndarray:
    damaged = clean.copy()
    source = clean[:, parity::2]
    damaged[:, parity + 1 :: 2] = source[:, : damaged[:, parity + 1 :: 2].shape[1]]
    return damaged


def band_error_db(candidate: np.ndarray, reference: np.ndarray, below_hz: float, sample_rate: float) -> float:
    """Energy of the difference below ``below_hz`` relative to the reference's energy there (dB): whole-signal FFT
    with a Kaiser β 20 window, whose sidelobes (< -150 dB) keep the synthesised top band out of the low bins."""
    window = ss.windows.kaiser(candidate.shape[-1], 20.0)
    spectrum_c = np.fft.rfft(candidate.astype(np.float64) * window)
    spectrum_r = np.fft.rfft(reference.astype(np.float64) * window)
    band = np.fft.rfftfreq(candidate.shape[-1], 1 / sample_rate) < below_hz
    error = np.sum(np.abs(spectrum_c[..., band] - spectrum_r[..., band]) ** 2)
    return float(10 * np.log10(error / np.sum(np.abs(spectrum_r[..., band]) ** 2)))


def test_the_shipped_model_exists_with_its_training_record() -> None:
    from pedalchain.models.model_file import read_model_info

    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 4_000_000
    info = read_model_info(DEFAULT_WEIGHTS)
    assert info.kind == "restorer" and info.architecture == "doubled-samples-spectral"
    assert len(info.training["data"]) >= 20 and info.training["seed"] == 0
    assert set(info.training["data"]).isdisjoint(info.training["test"])
    assert info.metrics["test"]["trained"]["lsd"] < info.metrics["test"]["naive"]["lsd"]


def test_halfband_filter_keeps_samples_and_constants() -> None:
    taps = halfband_filter()
    assert taps.shape == (2 * HALF_TAPS + 1,) and taps[HALF_TAPS] == 0.5
    assert np.all(taps[HALF_TAPS + 2 :: 2] == 0) and abs(taps.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_low_band_equals_a_high_quality_resampling_of_the_kept_samples(parity: int, sample_rate: int) -> None:
    """Below 0.9·fs/4 the full repair (model included) is resample_poly(y[parity::2], 2, 1) with a long
    independent filter (1001-tap Kaiser β 14) to within -60 dB."""
    clean = music(2.5, sample_rate, seed=parity)
    damaged = doubled(clean, parity)
    repaired = DoubledSampleRepair("always", parity).process(damaged, sample_rate)
    reference = ss.resample_poly(damaged[:, parity::2].astype(np.float64), 2, 1, axis=-1,
                                 window=ss.firwin(1001, 0.5, window=("kaiser", 14.0)))
    count = min(reference.shape[1], repaired.shape[1] - parity)
    inner = slice(4096, count - 4096)  # the reference filter's own edge effects
    candidate = repaired[:, parity : parity + count][:, inner]
    error_db = band_error_db(candidate, reference[:, :count][:, inner], 0.9 * sample_rate / 4, sample_rate)
    assert error_db < -60, f"low band differs from resample_poly by {error_db:.1f} dB"
    # and the synthesised band is really there: energy above fs/4 that the naive repair does not have
    naive = DoubledSampleRepair("naive", parity).process(damaged, sample_rate)
    high = np.fft.rfftfreq(clean.shape[1], 1 / sample_rate) > 1.15 * sample_rate / 4
    energy = [np.sum(np.abs(np.fft.rfft(x)[:, high]) ** 2) for x in (repaired, naive, clean)]
    assert energy[0] > 100 * energy[1]
    assert 0.01 * energy[2] < energy[0] < 2 * energy[2]  # a log-domain estimate: below the true energy


def test_kept_samples_pass_unchanged_in_naive_mode() -> None:
    """The low band's interpolation keeps every kept sample bit for bit (a half-band filter)."""
    clean = music(1.0)
    damaged = doubled(clean, 1)
    naive = DoubledSampleRepair("naive", 1).process(damaged, SR)
    assert_close(naive[:, 1::2], damaged[:, 1::2], "kept samples", atol=1e-6)


@pytest.mark.parametrize("pattern", [1, 7, 4096, 10000, RANDOM])
def test_repair_is_chunk_invariant(pattern) -> None:
    clean = music(0.6 if pattern == 1 else 2.5, seed=3)
    damaged = doubled(clean, 0)
    expected = DoubledSampleRepair("always", 0).process(damaged, SR)
    assert np.abs(expected - damaged).max() > 0.01
    assert_close(stream(DoubledSampleRepair("always", 0), damaged, SR, pattern, seed=5), expected,
                 f"always, blocks {pattern}", atol=0.0)


def test_detect_mode_repairs_only_the_detected_region_and_streams_alike() -> None:
    """A file damaged only from 1.0 s to 2.0 s: the repair stays inside (with cross-fades) and the rest passes
    through bit for bit; streaming after the analysis gives the same output as one-shot."""
    clean = music(3.0, seed=4)
    damaged = clean.copy()
    a, b = SR, 2 * SR
    damaged[:, a:b] = doubled(clean[:, a:b], 0)
    restorer = DoubledSampleRepair()  # mode detect, parity auto
    one_shot = restorer.process(damaged, SR)
    assert restorer.detected_parity == 0
    assert restorer.regions and restorer.regions[0][0] <= a + 1 and restorer.regions[0][1] >= b - 1
    fade = int(0.010 * SR)
    outside = np.r_[0 : restorer.regions[0][0], restorer.regions[0][1] : damaged.shape[1]]
    assert np.array_equal(one_shot[:, outside], damaged[:, outside])
    assert np.abs(one_shot[:, a + fade : b - fade] - damaged[:, a + fade : b - fade]).max() > 0.01
    restorer.analyze_input(damaged, SR)
    assert_close(stream(restorer, damaged, SR, RANDOM, seed=2), one_shot, "detect mode streamed after analysis",
                 atol=0.0)


def test_detection_decides_the_parity_and_streaming_without_analysis_uses_parity_0() -> None:
    clean = music(2.0, seed=6)
    damaged = doubled(clean, 1)
    auto = DoubledSampleRepair("always")
    out_auto = auto.process(damaged, SR)
    assert auto.detected_parity == 1 and auto.active_parity == 1
    assert_close(out_auto, DoubledSampleRepair("always", 1).process(damaged, SR), "auto parity = forced 1")
    streamed = stream(DoubledSampleRepair("always"), damaged, SR, 512)  # no analysis: parity 0
    assert_close(streamed, DoubledSampleRepair("always", 0).process(damaged, SR), "no analysis = parity 0")
    clean_pass = DoubledSampleRepair().process(clean, SR)  # nothing detected: bit-exact passthrough
    assert np.array_equal(clean_pass, clean)


def test_latency_is_the_same_in_every_mode() -> None:
    latencies = {DoubledSampleRepair(mode).latency_at(SR) for mode in ("detect", "always", "naive")}
    assert len(latencies) == 1


def test_stereo_channels_are_independent_and_mono_works() -> None:
    clean = music(1.5, seed=7)
    damaged = doubled(clean, 0)
    stereo = DoubledSampleRepair("always", 0).process(damaged, SR)
    left = DoubledSampleRepair("always", 0).process(damaged[0], SR)
    assert left.ndim == 1
    assert_close(stereo[0], left, "left channel alone")


def test_wet_blends_with_the_latency_aligned_dry_signal(tmp_path: Path) -> None:
    clean = music(1.5, seed=8)
    damaged = doubled(clean, 0)
    (tmp_path / "wet.yaml").write_text("steps:\n  - restorer: doubled-samples\n    mode: always\n    wet: 0.25\n")
    blended = load_chain(tmp_path / "wet.yaml").process(damaged, SR)
    full = DoubledSampleRepair("always").process(damaged, SR)
    assert_close(blended, 0.75 * damaged + 0.25 * full, "wet 0.25", atol=2e-6)


def test_shipped_preset_repairs_a_file_out_of_the_box(tmp_path: Path) -> None:
    from pedalchain.cli import main

    clean = music(2.0, seed=9)
    source = tmp_path / "broken.wav"
    sf.write(source, doubled(clean, 0).T, SR, subtype="FLOAT")
    out = tmp_path / "fixed.wav"
    assert main(["apply", "repair", str(source), "-o", str(out)]) == 0
    repaired, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == SR
    assert_close(repaired.T, DoubledSampleRepair("detect").process(doubled(clean, 0), SR), "preset output",
                 atol=1e-5)


def test_bad_parameters_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="mode"):
        restorer_class("doubled-samples").from_params({"mode": "sometimes"}, where="repair.yaml:3")
    with pytest.raises(ParameterError, match="parity"):
        DoubledSampleRepair(parity=2)
    with pytest.raises(ParameterError, match="no parameter amount"):
        DoubledSampleRepair.from_params({"amount": 3})
    with pytest.raises(ParameterError, match="no such model file"):
        DoubledSampleRepair.from_params({"model": "missing.safetensors"}, base_dir=tmp_path)
    with pytest.raises(ParameterError, match="32–50 kHz"):
        DoubledSampleRepair("always").process(np.zeros((2, 1000), np.float32), 96000)


def test_mode_and_parity_set_after_building_apply_and_are_checked() -> None:
    damaged = doubled(music(seconds=1.0), parity=1)
    restorer = DoubledSampleRepair("naive", parity=0)
    restorer.process(damaged, SR)
    restorer.mode, restorer.parity = "always", 1.0
    assert repr(restorer) == "DoubledSampleRepair(mode='always', parity=1)"
    np.testing.assert_array_equal(restorer.process(damaged, SR),
                                  DoubledSampleRepair("always", parity=1).process(damaged, SR))
    with pytest.raises(ParameterError, match="mode"):
        restorer.mode = "sometimes"
    with pytest.raises(ParameterError, match="parity"):
        restorer.parity = 2


def test_model_path_resolves_against_the_yaml_folder(tmp_path: Path) -> None:
    import shutil

    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "mine.safetensors")
    restorer = DoubledSampleRepair.from_params({"model": "mine.safetensors"}, base_dir=tmp_path)
    assert restorer.model_path == tmp_path / "mine.safetensors"
    assert restorer.params() == {"model": str(tmp_path / "mine.safetensors")}
    arrays, config = load_model(restorer.model_path)
    assert config["variant"] in ("band-mlp", "bins-linear") and arrays
