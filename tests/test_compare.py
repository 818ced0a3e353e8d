"""chains/compare.py on real files written with soundfile (seeded signals, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pedalchain.chains.compare import compare_files, format_compare
from pedalchain.errors import AudioFileError, ParameterError

FS = 44100


def signal(seconds: float = 4.0, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Seeded noise plus a tone, (samples, channels) float32; long enough to span several 65536-sample blocks."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * FS)) / FS
    tone = 0.2 * np.sin(2 * np.pi * 330 * t)[:, None]
    return (tone + 0.1 * rng.standard_normal((len(t), channels))).astype(np.float32)


def write(path: Path, x: np.ndarray, fs: int = FS) -> Path:
    sf.write(str(path), x, fs, subtype="FLOAT")
    return path


def test_identical_files(tmp_path: Path) -> None:
    x = signal()
    result = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", x))
    assert result["lag_samples"] == 0 and result["compared_samples"] == len(x)
    assert result["snr_db"] >= 100 and result["si_sdr_db"] >= 100
    assert result["lsd"] == pytest.approx(0, abs=1e-9)
    assert result["split_hz"] == FS / 4
    assert "SNR" in format_compare(result)


@pytest.mark.parametrize("delay", [777, -1234])
def test_delayed_copy_is_aligned(tmp_path: Path, delay: int) -> None:
    x = signal(seed=1)
    if delay > 0:
        candidate = np.concatenate([np.zeros((delay, 2), np.float32), x[:-delay]])
    else:
        candidate = x[-delay:]
    result = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", candidate))
    assert result["lag_samples"] == delay
    assert result["compared_samples"] == len(x) - abs(delay)
    assert result["snr_db"] >= 100 and result["lsd"] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_known_snr(tmp_path: Path, snr_db: float) -> None:
    x = signal(seed=2)
    noise = np.random.default_rng(3).standard_normal(x.shape)
    noise *= np.sqrt(np.sum(x.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    result = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", (x + noise).astype(np.float32)))
    assert result["lag_samples"] == 0
    assert result["snr_db"] == pytest.approx(snr_db, abs=0.5)
    assert result["si_sdr_db"] == pytest.approx(snr_db, abs=0.5)
    assert result["lsd"] > 0


def test_doubled_samples_hurt_the_high_band_most(tmp_path: Path) -> None:
    x = signal(seed=4)
    damaged = x.copy()
    damaged[1::2] = damaged[0::2]
    result = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", damaged), split_hz=11025)
    assert result["lsd_high"] > result["lsd_low"] > 0


def test_mismatches_are_refused(tmp_path: Path) -> None:
    x = signal(seconds=1)
    reference = write(tmp_path / "a.wav", x)
    with pytest.raises(ParameterError, match="a.wav.*44100.*b.wav.*48000"):
        compare_files(reference, write(tmp_path / "b.wav", x, fs=48000))
    with pytest.raises(ParameterError, match="channel"):
        compare_files(reference, write(tmp_path / "m.wav", x[:, :1]))
    with pytest.raises(ParameterError, match="split_hz"):
        compare_files(reference, reference, split_hz=30000)
    with pytest.raises(AudioFileError, match="no such file"):
        compare_files(reference, tmp_path / "missing.wav")
