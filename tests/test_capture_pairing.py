"""Capture data checks: excitation, latency detection/alignment, rate/length/repeatability messages, losses."""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest
import torch
from pedalchain.errors import AudioFileError
from pedalchain.models.capture.excitation import make_excitation
from pedalchain.models.capture.losses import ESRLoss, MultiResolutionSTFTLoss, SegmentESRLoss
from pedalchain.models.capture.pairing import (
    check_lengths,
    check_repeatability,
    check_sample_rates,
    detect_latency,
    prepare_pair,
)

RATE = 16000


@pytest.fixture(scope="module")
def excitation():
    return make_excitation(RATE)


def _delayed(audio: np.ndarray, delay: int) -> np.ndarray:
    if delay >= 0:
        return np.concatenate([np.zeros(delay, np.float32), audio])
    return audio[-delay:]


def test_excitation_is_deterministic_and_covers_levels(excitation) -> None:
    again = make_excitation(RATE)
    assert np.array_equal(excitation.audio, again.audio)
    assert not np.array_equal(excitation.audio, make_excitation(RATE, seed=1).audio)
    assert 60 <= len(excitation.audio) / RATE <= 180
    assert np.max(np.abs(excitation.audio)) <= 1.0
    train, validation = excitation.regions["train"], excitation.regions["validation"]
    assert train[1] <= validation[0]
    # segment levels span at least -60..-1 dBFS
    audio = excitation.audio[train[0] : train[1]].astype(np.float64)
    frames = audio[: len(audio) // 1024 * 1024].reshape(-1, 1024)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-30)
    assert level[level > -100].min() < -60 and level.max() > -6
    source, repeat = excitation.regions["repeat_source"], excitation.regions["repeat"]
    assert np.array_equal(excitation.audio[source[0] : source[1]], excitation.audio[repeat[0] : repeat[1]])


@pytest.mark.parametrize("delay", [0, 123, -17])
def test_latency_of_a_delayed_filtered_pair_is_found_to_the_sample(excitation, delay: int) -> None:
    wet = pedalboard.LowpassFilter(cutoff_frequency_hz=1000)(excitation.audio, RATE)
    found = detect_latency(excitation.audio, _delayed(wet, delay), RATE, excitation.blips)
    assert found.samples == delay
    assert found.certain


def test_a_gradual_onset_is_not_taken_for_latency() -> None:
    # a 4-pole low-pass responds from its first sample but rises slowly (over 3 samples to 5 % of its peak at
    # 48 kHz): removing its rise as "latency" would ask a causal model to predict the future
    rate = 48000
    excitation = make_excitation(rate)
    ladder = pedalboard.LadderFilter(mode=pedalboard.LadderFilter.Mode.LPF24, cutoff_hz=1000, resonance=0.5, drive=2)
    wet = ladder(excitation.audio, rate)
    for delay in (0, 123):
        found = detect_latency(excitation.audio, _delayed(wet, delay), rate, excitation.blips)
        assert delay <= found.samples <= delay + 2  # a 5 % threshold took 3
        assert found.detail["peak_lag"] > found.samples  # the peak is the group delay, not the onset
    rendered = prepare_pair(excitation.audio, wet, rate, excitation=excitation, rendered=True)
    assert rendered.latency.samples == 0
    assert np.array_equal(rendered.wet, wet[: len(rendered.wet)])
    # a render with real latency (a plugin that does not report it) is still aligned
    assert prepare_pair(excitation.audio, _delayed(wet, 123), rate, excitation=excitation,
                        rendered=True).latency.samples >= 123


def test_unrelated_wet_is_flagged_uncertain(excitation) -> None:
    noise = np.random.default_rng(3).standard_normal(len(excitation.audio)).astype(np.float32) * 0.1
    assert not detect_latency(excitation.audio, noise, RATE, excitation.blips).certain


def test_prepare_pair_aligns_and_checks_repeatability(excitation) -> None:
    wet = pedalboard.Distortion(drive_db=12)(excitation.audio, RATE)
    pair = prepare_pair(excitation.audio, _delayed(wet, 250), RATE, excitation=excitation)
    assert pair.latency.samples == 250
    assert np.allclose(pair.wet[: len(wet)], wet[: len(pair.wet)], atol=1e-6)
    assert {c.name: c.passed for c in pair.checks}["check_repeatability"]
    assert pair.train == excitation.regions["train"]


def test_sample_rate_mismatch_is_critical_and_says_what_to_do(excitation) -> None:
    check = check_sample_rates(48000, 44100)
    assert not check.passed and check.critical
    assert "48000 Hz" in check.message and "44100 Hz" in check.message and "record again" in check.message
    with pytest.raises(AudioFileError, match="44100 Hz"):
        prepare_pair(excitation.audio, excitation.audio, 48000, 44100, where="amp.wav")


def test_short_wet_file_is_refused_with_a_cause(excitation) -> None:
    check = check_lengths(1000, 900, RATE)
    assert not check.passed and "shorter" in check.message and "trim" in check.message
    with pytest.raises(AudioFileError, match="amp.wav: the wet file is .* shorter"):
        prepare_pair(excitation.audio, excitation.audio[:-RATE], RATE, where="amp.wav")


def test_a_nan_or_a_file_too_short_is_refused_with_a_cause(excitation) -> None:
    """A NaN in the wet file was accepted (latency "found" at -0.5 s, ESR 1, a useless model written); a 480-sample
    pair ended in a torch traceback from the report's spectra, after the model file was written."""
    broken = excitation.audio.copy()
    broken[1000] = np.nan
    with pytest.raises(AudioFileError, match="amp.wav: the wet file holds 1 NaN/Inf sample.*at sample 1000"):
        prepare_pair(excitation.audio, broken, RATE, where="amp.wav")
    with pytest.raises(AudioFileError, match="the dry file is 0.030 s long; a capture needs at least 1 s"):
        prepare_pair(excitation.audio[:480], excitation.audio[:480], RATE, where="amp.wav")


def test_a_wet_file_as_long_as_the_dry_one_is_not_padded_with_silence() -> None:
    """With an interface's latency, such a wet file ends early once aligned: the zeros put there were scored as
    the device's output (a perfect FIR fit reported ESR 4e-3 and "did not reach the target")."""
    rng = np.random.default_rng(0)
    dry = (0.3 * rng.standard_normal(3 * RATE)).astype(np.float32)
    wet = np.convolve(dry, [0.5, 0.3, 0.2])[: dry.size].astype(np.float32)
    pair = prepare_pair(dry, _delayed(wet, 240)[: dry.size], RATE)
    assert pair.latency.samples == 240
    assert len(pair.dry) == len(pair.wet) == dry.size - 240 and pair.validation[1] == dry.size - 240
    np.testing.assert_array_equal(pair.wet, wet[: dry.size - 240])


def test_repeatability_check_catches_a_device_that_changes(excitation) -> None:
    wet = excitation.audio.copy()
    source, repeat = excitation.regions["repeat_source"], excitation.regions["repeat"]
    assert check_repeatability(wet, source, repeat).passed
    wet[repeat[0] : repeat[1]] *= 0.7  # the device got quieter the second time
    check = check_repeatability(wet, source, repeat)
    assert not check.passed and not check.critical
    assert "does not sound like itself" in check.message and check.measured["esr"] > 0.05


def test_losses() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 8192, generator=generator)
    assert float(ESRLoss()(target, target)) == 0.0
    assert float(ESRLoss()(torch.zeros_like(target), target)) == pytest.approx(1.0, rel=1e-6)
    assert float(ESRLoss(pre_emphasis=0.95)(0.9 * target, target)) == pytest.approx(0.01, rel=1e-4)
    # a silent segment with a tiny error must not dominate: the floor caps its weight
    quiet = target.clone()
    quiet[:, :4096] = 0.0
    predicted = quiet.clone()
    predicted[:, :4096] = 1e-4
    assert float(SegmentESRLoss(segment=4096, floor_db=-50.0)(predicted, quiet)) < 1e-2
    assert float(MultiResolutionSTFTLoss()(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(MultiResolutionSTFTLoss()(0.5 * target, target)) > 0.1


def test_a_render_that_lags_says_the_model_will_not_delay() -> None:
    """A chain's own Delay (or a plugin that does not report its latency) leaves the render late: the lag is
    removed for training, and the user is told the model will not have it (it read as a near-perfect fit)."""
    rate = 48000
    excitation = make_excitation(rate)
    wet = pedalboard.Delay(delay_seconds=0.01, feedback=0.0, mix=1.0)(excitation.audio, rate)
    pair = prepare_pair(excitation.audio, wet, rate, excitation=excitation, rendered=True)
    assert 470 <= pair.latency.samples <= 480
    assert any("the model will not delay by it" in warning for warning in pair.warnings)
    on_time = prepare_pair(excitation.audio, excitation.audio * np.float32(0.5), rate, excitation=excitation,
                           rendered=True)
    assert on_time.latency.samples == 0 and not any("lags" in warning for warning in on_time.warnings)


def test_a_silent_dry_file_is_refused(excitation) -> None:
    silent = np.zeros_like(excitation.audio)
    with pytest.raises(AudioFileError, match="the dry recording is silent"):
        prepare_pair(silent, excitation.audio, RATE, where="dry.wav")
