"""``restorer: dequantize``: hold N and phase detection, exact true samples, SNR gain over the staircase and
over sinc, coarse bit-depth detection and consistent smoothing, chunk invariance, YAML round trip, errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RANDOM, assert_close, plucked_notes, stream
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data
from pedalchain.effects.restorers.dequantize import (
    DEFAULT_WEIGHTS,
    Dequantize,
    detect_hold_and_bits,
    hold_gather,
    sinc_interpolator,
)
from pedalchain.errors import ChainFileError, ModelFileError, ParameterError
from pedalchain.models.restore.damage import Bits, Hold

SR = 44100


def music(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Stereo decaying harmonic notes with a spectrum falling like music's (1/h^1.5), peak 0.8."""
    return plucked_notes(seconds, SR, seed, note_every_s=0.25, harmonics=9, decay_per_s=3.0, peak=0.8)


def snr(clean: np.ndarray, other: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return float(10 * np.log10(np.sum(clean ** 2) / np.sum((clean - other) ** 2)))


def test_shipped_weights_hold_learned_filters() -> None:
    from pedalchain.models.model_file import read_model_info

    info = read_model_info(DEFAULT_WEIGHTS)
    assert info.architecture == "dequantize-polyphase" and info.kind == "restorer"
    assert info.training["data"] and not set(info.training["data"]) & set(info.training["test"])
    test = info.metrics["test"]
    assert test["hold:4"]["dequantize"] >= test["hold:4"]["sinc"] > test["hold:4"]["passthrough"]
    assert test["bits:8"]["dequantize"] > test["bits:8"]["passthrough"] + 2  # the quantisation noise removed


@pytest.mark.parametrize("factor", [3, 4, 7])
def test_hold_interpolator_mirrors_nothing_back_above_its_band(factor: int) -> None:
    """The interpolator as one filter at the full rate (the response to one true sample): flat to 0.8 fs/2N, and no
    image lobe above 1.3 fs/2N.  A 0.9 fs/2N sinc whose row 0 was the identity anyway mirrored its band edge
    around fs/N at -12 dB."""
    filters = sinc_interpolator(factor)
    half = filters.shape[1] // 2
    response = np.zeros((2 * half) * factor)
    for i in range(-half + 1, half + 1):  # y[mN + j] picks up filters[j, i + half - 1] x d[m + i], d a unit impulse
        response[(half - i) * factor:(half - i) * factor + factor] = filters[:, i + half - 1]
    spectrum = np.abs(np.fft.rfft(response, 1 << 14))
    level = 20 * np.log10(spectrum / spectrum[0] + 1e-12)
    freqs = np.fft.rfftfreq(1 << 14, 1 / SR)
    band = SR / (2 * factor)
    assert np.abs(level[freqs < 0.8 * band]).max() < 0.1
    assert level[freqs > 1.3 * band].max() < -60, level[freqs > 1.3 * band].max()


@pytest.mark.parametrize("factor", [3, 4, 7])
@pytest.mark.parametrize("phase", [0, 2])
def test_hold_is_detected_and_repaired(factor: int, phase: int) -> None:
    clean = music(seed=factor)
    damaged = Hold(factor, phase=phase).apply(clean, SR, np.random.default_rng(0))
    found = detect_hold_and_bits(damaged)
    assert (found["hold"], found["phase"]) == (factor, phase)
    restorer = Dequantize()
    out = restorer.process(damaged, SR)
    assert restorer.detected[:2] == (factor, phase)
    true = np.zeros(clean.shape[1], bool)
    true[phase::factor] = True
    assert np.array_equal(out[:, true], damaged[:, true])  # the true samples pass exactly
    assert snr(clean, out) > snr(clean, damaged) + 6
    sinc = hold_gather(damaged, 0, np.arange(clean.shape[1]), factor, phase, sinc_interpolator(factor))
    assert snr(clean, out) >= snr(clean, sinc) - 0.5  # learned filters at least as good as sinc


def test_clean_and_full_resolution_input_passes_through() -> None:
    clean = music(seed=9)
    restorer = Dequantize()
    out = restorer.process(clean, SR)
    assert np.array_equal(out, clean)
    assert restorer.detected == (None, 0, None)
    assert "passing through" in restorer.analyze_input(clean, SR)[0]
    cd_quality = (np.round(clean * 32767) / 32768).astype(np.float32)  # a 16-bit file is not "coarse"
    assert detect_hold_and_bits(cd_quality)["bits"] is None
    assert np.array_equal(Dequantize().process(cd_quality, SR), cd_quality)


def test_digital_silence_says_nothing_about_the_grid() -> None:
    # zero is on every grid: a 10 ms click in 10 s of silence was "on a 2-bit grid" and moved by up to 0.11
    sparse = np.zeros((1, 10 * SR), np.float32)
    sparse[0, SR:SR + 441] = np.round(0.5 * np.hanning(441) * np.sin(2 * np.pi * 1000 * np.arange(441) / SR)
                                      * 32767) / 32768
    assert detect_hold_and_bits(sparse)["bits"] is None
    assert np.array_equal(Dequantize().process(sparse, SR), sparse)
    assert detect_hold_and_bits(np.zeros((2, SR), np.float32))["bits"] is None


@pytest.mark.parametrize("dither", [False, True])
def test_coarse_bits_are_detected_and_smoothed_consistently(dither: bool) -> None:
    clean = music(seed=11)
    damaged = Bits(6, dither=dither).apply(clean, SR, np.random.default_rng(1))
    assert detect_hold_and_bits(damaged)["bits"] == 6
    restorer = Dequantize()
    out = restorer.process(damaged, SR)
    assert restorer.detected[2] == 6
    step = 2.0 ** -5
    assert np.abs(out.astype(np.float64) - damaged).max() <= step / 2 + 1e-7  # still rounds back to the input
    assert snr(clean, out) > snr(clean, damaged) + (3.0 if dither else 5.0)  # the known noise floor removed


def test_settings_changed_after_building_apply_and_are_checked() -> None:
    """As a pedalboard plugin's parameters: hold and bits set on a built restorer are what its next call uses (they
    were fixed when built, and a change was silently ignored)."""
    clean = music(seed=5)
    held = Hold(4, phase=1).apply(clean, SR, np.random.default_rng(0))
    coarse = Bits(6, dither=False).apply(clean, SR, np.random.default_rng(0))
    restorer = Dequantize(hold=3, bits=24)
    restorer.process(held, SR)
    restorer.hold = 4
    np.testing.assert_array_equal(restorer.process(held, SR), Dequantize(hold=4, bits=24).process(held, SR))
    restorer.hold, restorer.bits = 1, 6
    np.testing.assert_array_equal(restorer.process(coarse, SR), Dequantize(hold=1, bits=6).process(coarse, SR))
    for name, bad in (("hold", 40), ("bits", "many"), ("bits", 21)):  # 21..23 had silently meant off
        with pytest.raises(ParameterError, match=name):
            setattr(restorer, name, bad)
    assert repr(restorer) == "Dequantize(hold=1, bits=6)"


@pytest.mark.parametrize("pattern", [1, 100, 10000, RANDOM])
@pytest.mark.parametrize("mode", ["hold", "bits"])
def test_streaming_equals_one_shot(pattern: int | str, mode: str) -> None:
    clean = music(0.4 if pattern == 1 else 1.0, seed=12)
    damage = Hold(5, phase=3) if mode == "hold" else Bits(6, dither=False)
    damaged = damage.apply(clean, SR, np.random.default_rng(0))
    restorer = Dequantize(hold=5) if mode == "hold" else Dequantize(hold=1, bits=6)
    whole = restorer.process(damaged, SR)
    restorer.analyze_input(damaged, SR)
    streamed = stream(restorer, damaged, SR, pattern, seed=4)
    # hold: the same arithmetic in any split; bits: float32 STFT batches may round 1 ulp differently
    assert_close(streamed, whole, f"dequantize {mode} streamed in blocks of {pattern}",
                 atol=0.0 if mode == "hold" else 1e-6)


def test_yaml_round_trip_and_errors(tmp_path) -> None:
    chain = chain_from_yaml("steps:\n  - restorer: dequantize\n    hold: 4\n    bits: 24\n")
    assert chain_to_data(chain, tmp_path)["steps"] == [{"restorer": "dequantize", "hold": 4, "bits": 24}]
    assert chain_to_data(chain_from_yaml("steps:\n  - restorer: dequantize\n"), tmp_path)["steps"] == [
        {"restorer": "dequantize"}]
    for bad, match in [("hold: 40", "hold"), ("hold: 2.5", "hold"), ("bits: one", "bits"), ("depth: 3", "depth")]:
        with pytest.raises((ParameterError, ChainFileError), match=match):
            chain_from_yaml(f"steps:\n  - restorer: dequantize\n    {bad}\n")
    denoise_weights = DEFAULT_WEIGHTS.parent / "denoise.safetensors"  # checked when the chain is loaded
    with pytest.raises(ModelFileError, match="needs 'dequantize-polyphase'"):
        chain_from_yaml(f"steps:\n  - restorer: dequantize\n    model: {denoise_weights}\n")
    with pytest.raises(ParameterError, match="kHz"):
        Dequantize().process(np.zeros((2, 10), np.float32), 4000)


def test_fit_hold_learns_an_interpolator_at_least_as_good_as_sinc() -> None:
    import scipy.signal as ss
    from pedalchain.models.restore.fit_dequantize import fit_hold

    rng = np.random.default_rng(5)
    sos = ss.butter(6, 3000, fs=SR, output="sos")  # material with little energy above 3 kHz, like much music
    train = [ss.sosfilt(sos, rng.standard_normal((2, SR)), axis=-1) for _ in range(2)]
    test = ss.sosfilt(sos, rng.standard_normal((2, SR)), axis=-1).astype(np.float32)
    filters = fit_hold(train, 4, np.random.default_rng(0))
    assert np.array_equal(filters[0], np.arange(-15, 17) == 0)
    damaged = Hold(4, phase=0).apply(test, SR, rng)
    targets = np.arange(test.shape[1])
    learned = hold_gather(damaged, 0, targets, 4, 0, filters)
    sinc = hold_gather(damaged, 0, targets, 4, 0, sinc_interpolator(4))
    assert snr(test, learned) >= snr(test, sinc) - 0.1
    assert snr(test, learned) > snr(test, damaged) + 10
