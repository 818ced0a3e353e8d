"""The streaming STFT base of the spectral restorers (effects/restorers/stft.py): exact reconstruction through an
identity hook, chunk invariance with a hook that changes the audio and keeps state, context frames, framing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RANDOM, assert_close, noise_signal, stream, stream_raw
from pedalchain.effects.restorers.stft import FrameContext, SpectralRestorer, StftStream, central, stft_size
from pedalchain.errors import ParameterError

SR = 44100


class Identity(SpectralRestorer):
    name = "test-identity"


class Shaping(SpectralRestorer):
    """Cuts everything above 5 kHz, scales each frame by a gain that depends on the frames before it (state kept
    between calls) and smooths magnitudes over neighbouring frames (context on both sides)."""

    name = "test-shaping"
    lookbehind = 2
    lookahead = 1

    def _reset_frames(self) -> None:
        self._seen = 0

    def _process_frames(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        mid = central(spectra, context).copy()
        count = mid.shape[2]
        # magnitude smoothed over the three frames before, at and after each central frame, phase kept
        magnitude = np.abs(spectra)
        smooth = (magnitude[:, :, 1 : 1 + count] + magnitude[:, :, 2 : 2 + count] + magnitude[:, :, 3 : 3 + count]) / 3
        mid = smooth * np.exp(1j * np.angle(mid))
        mid[:, context.frequencies_hz > 5000] = 0
        gains = 1.0 + 0.5 * np.sin(0.1 * (self._seen + np.arange(count)))
        self._seen += count
        return (mid * gains).astype(np.complex64)


def test_stft_size_per_rate() -> None:
    assert stft_size(44100) == (2048, 512)
    assert stft_size(48000) == (2048, 512)
    assert stft_size(96000) == (4096, 1024)


@pytest.mark.parametrize("pattern", [1, 7, 512, 10000, RANDOM])
def test_identity_hook_reproduces_the_input_delayed_by_the_latency(pattern) -> None:
    audio = noise_signal(2, 12000 if pattern == 1 else 40000, seed=3)
    restorer = Identity()
    raw = stream_raw(restorer, audio, SR, [pattern] if pattern != RANDOM else [300, 1, 4097, 9999, 2])
    latency = restorer.latency
    assert latency == 2047
    assert_close(raw[:, :latency], np.zeros((2, latency), np.float32), "output before the latency")
    assert_close(raw[:, latency:], audio[:, : audio.shape[1] - latency], f"identity, blocks {pattern}", atol=1e-6)


def test_identity_one_shot_mono_and_stereo_at_48k_and_96k() -> None:
    for sr in (48000, 96000):
        audio = noise_signal(2, 50000, seed=4)
        assert_close(Identity().process(audio, sr), audio, f"stereo one-shot at {sr}")
        out = Identity().process(audio[0], sr)
        assert out.ndim == 1
        assert_close(out, audio[0], f"mono one-shot at {sr}")
    assert Identity().latency_at(96000) == 4095


@pytest.mark.parametrize("pattern", [1, 3, 511, 512, 513, 10000, RANDOM])
def test_stateful_hook_with_context_is_chunk_invariant(pattern) -> None:
    audio = noise_signal(2, 15000 if pattern == 1 else 60000, seed=5)
    expected = Shaping().process(audio, SR)
    # it really changes the audio: highs removed, level modulated
    assert np.abs(expected - audio).max() > 0.05
    restorer = Shaping()
    assert restorer.latency_at(SR) == 2047 + 512
    assert_close(stream(restorer, audio, SR, pattern, seed=11), expected, f"blocks {pattern}")


def test_context_frames_and_positions() -> None:
    """Frame k starts at k*hop - (n_fft - hop); an impulse shows up only in the frames that cover it."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def hook(spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        assert spectra.dtype == np.complex64 and spectra.shape[:2] == (1, 1025)
        assert np.array_equal(context.starts, (context.first + np.arange(spectra.shape[2])) * 512 - 1536)
        seen.append((context.starts, np.abs(spectra[0]).max(axis=0)))
        return central(spectra, context)

    impulse = np.zeros((1, 20000), np.float32)
    impulse[0, 7000] = 1.0
    stft = StftStream(1, 2048, 512, hook, SR, lookbehind=1, lookahead=1)
    for start in range(0, 20000, 777):
        stft.process(impulse[:, start : start + 777])
    starts, first_seen = np.unique(np.concatenate([s for s, _ in seen]), return_index=True)  # context repeats
    peaks = np.concatenate([p for _, p in seen])[first_seen]
    covering = (starts <= 7000) & (7000 < starts + 2048)
    assert covering.sum() == 4
    assert np.all(peaks[covering] > 0.01) and np.all(peaks[~covering] < 1e-6)
    assert starts[0] == -512 - 1536  # first batch: one lookbehind frame of silence before frame 0


def test_rates_outside_the_range_are_refused_naming_the_restorer() -> None:
    with pytest.raises(ParameterError, match="test-identity.*22.05 kHz|test-identity.*22050"):
        Identity().process(np.zeros((2, 100), np.float32), 22050)


def test_a_hook_returning_the_wrong_shape_is_an_error() -> None:
    stft = StftStream(2, 256, 64, lambda spectra, context: spectra[:, :10], SR)
    with pytest.raises(ValueError, match="hook returned shape"):
        stft.process(np.zeros((2, 1000), np.float32))


def test_bad_framing_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        StftStream(1, 1000, 250, lambda s, c: s, SR)
    with pytest.raises(ValueError, match="hop must divide"):
        StftStream(1, 1024, 384, lambda s, c: s, SR)
