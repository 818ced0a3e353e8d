"""Shared test helpers: seeded test signals, a streaming driver that checks the streaming contract,
block-size patterns, impulse-response files and the zam-plugins requirement.

Everything here runs the real pedalboard and the real pedalchain code: no mocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

VST3_DIR = Path("/usr/lib/vst3")

RANDOM = "random"
"""Block-size pattern: seeded random sizes from 1 to 8192 samples, log-uniform; see :func:`block_sizes`."""

PREPARED_BLOCK = 8192
"""pedalboard's default buffer size, which pedalchain prepares native plugins with; a streamed block larger
than this is a separate case (test_engine.test_stream_survives_a_block_larger_than_any_before)."""

ATOL = 1e-6
"""Largest difference accepted between two renderings that should be the same (float32 audio)."""


def plucked_notes(seconds: float, sample_rate: int, seed: int, *, note_every_s: float, harmonics: int,
                  decay_per_s: float, peak: float, air: float = 0.0) -> np.ndarray:
    """Seeded stereo music-like test material, float32: a note every ``note_every_s`` (110-440 Hz fundamentals,
    ``harmonics`` partials falling as 1/h^1.5, exponential decay), plus ``air`` of white noise, scaled to ``peak``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros((2, n))
    for start in np.arange(0, seconds, note_every_s):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        onset = int(start * sample_rate)
        local = t[onset:] - start
        tone = sum(np.sin(2 * np.pi * f0 * h * local + rng.uniform(0, 6)) / h ** 1.5 for h in range(1, harmonics + 1))
        out[:, onset:] += np.exp(-decay_per_s * local) * tone * rng.uniform(0.3, 1.0, size=(2, 1))
    if air:
        out += air * rng.standard_normal(out.shape)
    return (peak * out / np.abs(out).max()).astype(np.float32)


def noise_signal(channels: int, num_samples: int, seed: int = 0) -> np.ndarray:
    """Seeded noise with a slow 3-cycle loudness swell (about -40 to -6 dBFS), shape (channels, samples).

    The swell makes compressors, gates and limiters act on part of the signal and not on the rest.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / num_samples
    envelope = 0.01 + 0.49 * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t))
    return (rng.standard_normal((channels, num_samples)) * envelope * 0.5).astype(np.float32)


def block_sizes(pattern: int | str, seed: int = 0) -> Iterator[int]:
    """An endless run of block sizes: a constant ``pattern``, or :data:`RANDOM` (seeded).

    The random run starts with a block of 3 to 4095 samples (a first block no longer than the channel
    count is a separate case: test_engine.test_stereo_stream_may_start_with_tiny_blocks), then sizes
    log-uniform from 1 to :data:`PREPARED_BLOCK`, so one-sample blocks, tiny blocks and large ones all come up.
    """
    if pattern != RANDOM:
        while True:
            yield int(pattern)
    rng = np.random.default_rng(seed)
    yield int(rng.integers(3, 4096))
    while True:
        yield int(np.exp(rng.uniform(0.0, np.log(PREPARED_BLOCK + 1))))


def stream(processor, audio: np.ndarray, sample_rate: float, pattern: int | str = 512, seed: int = 0) -> np.ndarray:
    """Stream ``audio`` through ``processor`` as a caller of the streaming contract would.

    reset(), then ``process(block, sr, reset=False)`` block by block, then ``processor.latency`` zeros to
    drain, and the first ``latency`` output samples dropped.  Every call must return exactly as many
    samples (and the same dimensionality) as it was given.  Returns output aligned with ``audio``.
    """
    processor.reset()
    sizes = block_sizes(pattern, seed)
    outputs = []

    def feed(signal: np.ndarray) -> None:
        start = 0
        while start < signal.shape[-1]:
            block = signal[..., start : start + next(sizes)]
            out = processor.process(block, sample_rate, reset=False)
            assert out.ndim == block.ndim, f"{block.ndim}-D block came back {out.ndim}-D"
            assert out.shape[-1] == block.shape[-1], (
                f"process(reset=False) returned {out.shape[-1]} samples for a block of {block.shape[-1]}"
            )
            outputs.append(out)
            start += block.shape[-1]

    feed(audio)
    latency = processor.latency
    feed(np.zeros(audio.shape[:-1] + (latency,), np.float32))
    streamed = np.concatenate(outputs, axis=-1)
    assert streamed.shape[-1] == audio.shape[-1] + latency
    return streamed[..., latency:]


def stream_raw(processor, audio: np.ndarray, sample_rate: float, sizes: list[int]) -> np.ndarray:
    """Stream ``audio`` in blocks of the given ``sizes`` (cycled) without draining or dropping anything."""
    processor.reset()
    outputs, start, index = [], 0, 0
    while start < audio.shape[-1]:
        block = audio[..., start : start + sizes[index % len(sizes)]]
        out = processor.process(block, sample_rate, reset=False)
        assert out.shape[-1] == block.shape[-1], f"{out.shape[-1]} samples back for a block of {block.shape[-1]}"
        outputs.append(out)
        start += block.shape[-1]
        index += 1
    return np.concatenate(outputs, axis=-1)


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, atol: float = ATOL) -> None:
    """Same shape and every sample within ``atol``; the message says where the worst difference is."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = float(difference.max()) if difference.size else 0.0
    if worst > atol:
        position = np.unravel_index(int(np.argmax(difference)), difference.shape)
        raise AssertionError(f"{what}: differs by up to {worst:.3g} (at {position}); allowed {atol:g}")


def write_impulse_response(path: Path, sample_rate: int = 44100, length: int = 512, seed: int = 7) -> Path:
    """A short decaying-noise impulse response (a small room), mono FLOAT WAV."""
    rng = np.random.default_rng(seed)
    ir = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 6))
    ir[0] = 1.0
    sf.write(str(path), (0.5 * ir / np.abs(ir).max()).astype(np.float32), sample_rate, subtype="FLOAT")
    return path


def require_vst3(name: str) -> Path:
    """Path of Debian's zam-plugins bundle ``name``; skip (fail on CI) when it is not installed."""
    path = VST3_DIR / f"{name}.vst3"
    if not path.exists():
        reason = f"{path} not found: install Debian's zam-plugins (apt-get install zam-plugins) to run VST3 tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        print(reason)
        pytest.skip(reason)
    return path
