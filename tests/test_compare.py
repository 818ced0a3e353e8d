"""chains/compare.py on real files written with soundfile (seeded signals, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pedalchain.chains.compare import compare_arrays, compare_files, format_compare, spectrogram_png
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
    broken = x.copy()
    broken[FS // 2, 1] = np.nan
    with pytest.raises(AudioFileError, match=r"nan.wav.*NaN/Inf samples \(first at 0.500 s\)"):
        compare_files(reference, write(tmp_path / "nan.wav", broken))


# -- the exact LSD definition, buffers, plots ----------------------------------------------------------------------
def reference_lsd(x: np.ndarray, y: np.ndarray, fs: int, split_hz: float) -> tuple[float, float, float]:
    """The issue's definition written plainly (whole signals in memory): centred STFT with reflect padding of
    1024, n_fft 2048, hop 512, periodic Hann, unnormalised rfft, power clamped at 1e-8, log10, RMS over bins per
    frame, mean over frames, average over channels; low/high: bins below / from the split."""
    window = np.hanning(2049)[:-1]
    low = np.arange(1025) * fs / 2048 < split_hz
    per_channel = []
    for channel in range(x.shape[0]):
        logs = []
        for signal in (x[channel], y[channel]):
            padded = np.pad(signal.astype(np.float64), 1024, mode="reflect")
            count = 1 + len(signal) // 512
            frames = np.stack([padded[t * 512 : t * 512 + 2048] for t in range(count)])
            logs.append(np.log10(np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-8)))
        squared = (logs[0] - logs[1]) ** 2
        per_channel.append([np.sqrt(squared.mean(axis=1)).mean(), np.sqrt(squared[:, low].mean(axis=1)).mean(),
                            np.sqrt(squared[:, ~low].mean(axis=1)).mean()])
    return tuple(np.mean(per_channel, axis=0))


@pytest.mark.parametrize("length", [1500, 2048, 65536 + 777, 3 * 65536 + 5])
def test_lsd_matches_the_plain_definition(tmp_path: Path, length: int) -> None:
    rng = np.random.default_rng(length)
    x = signal(seconds=length / FS + 0.01, seed=5)[:length]
    y = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    y[:, 1] *= 0.5
    expected = reference_lsd(x.T, y.T, FS, 8000.0)
    from_files = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", y), split_hz=8000,
                               max_lag_s=0)
    from_arrays = compare_arrays(x.T, y.T, FS, split_hz=8000)
    for result in (from_files, from_arrays):
        assert result["compared_samples"] == length
        got = (result["lsd"], result["lsd_low"], result["lsd_high"])
        assert got == pytest.approx(expected, rel=1e-9)
    assert from_arrays["snr_db"] == pytest.approx(from_files["snr_db"], abs=1e-9)
    assert from_arrays["si_sdr_db"] == pytest.approx(from_files["si_sdr_db"], abs=1e-9)


def test_lsd_of_a_tiny_signal_and_torch_agreement() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((2, 700)), rng.standard_normal((2, 700))
    result = compare_arrays(x, y, FS)
    assert result["lsd"] == pytest.approx(reference_lsd(x, y, FS, FS / 4)[0], rel=1e-9)
    torch = pytest.importorskip("torch")
    x, y = rng.standard_normal((1, 5000)), rng.standard_normal((1, 5000))
    spectra = [torch.stft(torch.from_numpy(s), 2048, 512, window=torch.hann_window(2048, dtype=torch.float64),
                          center=True, pad_mode="reflect", return_complex=True).abs().numpy() ** 2 for s in (x, y)]
    squared = (np.log10(np.maximum(spectra[0], 1e-8)) - np.log10(np.maximum(spectra[1], 1e-8))) ** 2
    assert compare_arrays(x, y, FS)["lsd"] == pytest.approx(float(np.sqrt(squared.mean(axis=1)).mean()), rel=1e-9)


def test_compare_arrays_aligns_when_asked() -> None:
    x = signal(seed=6).T
    late = np.concatenate([np.zeros((2, 300), np.float32), x[:, :-300]], axis=1)
    assert compare_arrays(x, late, FS)["snr_db"] < 10
    aligned = compare_arrays(x, late, FS, align=True)
    assert aligned["lag_samples"] == 300 and aligned["snr_db"] >= 100
    assert aligned["compared_samples"] == x.shape[1] - 300
    with pytest.raises(ParameterError, match="channel"):
        compare_arrays(x, x[:1], FS)
    mono = compare_arrays(x[0], x[0] * 0.5, FS)
    assert mono["channels"] == 1 and mono["snr_db"] == pytest.approx(6.02, abs=0.01)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    x = signal(seconds=2, seed=7)
    damaged = x.copy()
    damaged[1::2] = damaged[0::2]
    out = tmp_path / "cmp.png"
    result = compare_files(write(tmp_path / "a.wav", x), write(tmp_path / "b.wav", damaged), plot=out)
    assert result["plot"] == str(out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
    assert "plot" in format_compare(result)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    spectrogram_png(tmp_path / "s.png", {"short": np.zeros(10), "stereo": x.T}, FS, title="t")
    assert (tmp_path / "s.png").stat().st_size > 1000
