"""chains/detect.py on real files written with soundfile (seeded signals, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from pedalchain.chains.detect import detect_file, format_detect_table

FS = 44100


def music_like(seconds: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Sum of tones with slow tremolo plus white noise, (samples, channels), peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * FS)) / FS
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
                for f in (110, 220, 331, 440, 887, 1760, 3520))
    out = np.stack([0.06 * tones + 0.03 * rng.standard_normal(len(t)) for _ in range(channels)], axis=1)
    return out


def noise(seconds: float, seed: int = 0, level: float = 0.2) -> np.ndarray:
    return level * np.random.default_rng(seed).standard_normal((round(seconds * FS), 1))


def lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    return scipy.signal.sosfilt(scipy.signal.butter(12, cutoff_hz, fs=FS, output="sos"), x, axis=0)


def double(x: np.ndarray, parity: int = 0) -> np.ndarray:
    """parity 0: y[2n+1] = y[2n]; parity 1: y[2n+2] = y[2n+1]."""
    y = x.copy()
    source = y[parity::2]
    y[parity + 1::2] = source[: len(y[parity + 1::2])]
    return y


def hold(x: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(x[::factor], factor, axis=0)[: len(x)]


def write(path: Path, x: np.ndarray, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), x.astype(np.float32), FS, subtype=subtype)
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("kind", ["music", "bandnoise"])
def test_doubled_samples_found_with_parity(tmp_path: Path, subtype: str, parity: int, kind: str) -> None:
    source = music_like(4) if kind == "music" else lowpass(noise(4), 15000)
    result = detect_file(write(tmp_path / "d.wav", double(source, parity), subtype))
    doubled = result["doubled_samples"]
    assert doubled["detected"] and doubled["parity"] == parity
    assert doubled["share"] == pytest.approx(1.0)
    assert doubled["regions"] == [[0.0, 4.0]]
    assert result["hold"] == {"detected": True, "factor": 2}
    assert result["error"] is None
    json.dumps(result, allow_nan=False)


def test_doubled_stereo(tmp_path: Path) -> None:
    result = detect_file(write(tmp_path / "s.flac", double(music_like(3, seed=3, channels=2), 1)))
    assert result["channels"] == 2
    assert result["doubled_samples"]["detected"] and result["doubled_samples"]["parity"] == 1


def test_partial_damage_regions(tmp_path: Path) -> None:
    clean = music_like(8, seed=4)
    damaged = clean.copy()
    first, second = (round(2.2 * FS), round(4.3 * FS)), (round(6.0 * FS), round(7.1 * FS))
    for start, end in (first, second):
        damaged[start:end] = double(clean, 0)[start:end]
    doubled = detect_file(write(tmp_path / "p.wav", damaged))["doubled_samples"]
    assert doubled["detected"] and doubled["parity"] == 0
    assert len(doubled["regions"]) == 2
    for (start_s, end_s), (start, end) in zip(doubled["regions"], (first, second), strict=True):
        assert abs(start_s - start / FS) <= 0.5 and abs(end_s - end / FS) <= 0.5
    assert 0.2 < doubled["share"] < 0.5


def test_fades_at_the_ends_do_not_hide_damage(tmp_path: Path) -> None:
    x = double(music_like(5, seed=5), 0)
    t = np.arange(len(x)) / FS
    gain = np.minimum(1, np.minimum(t / 1.0, (t[-1] - t) / 1.0))[:, None]
    doubled = detect_file(write(tmp_path / "f.wav", x * gain, "FLOAT"))["doubled_samples"]
    assert doubled["detected"] and doubled["parity"] == 0
    assert doubled["regions"][0][0] <= 1.5 and doubled["regions"][-1][1] >= 3.5


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("name", ["music", "noise", "silence", "quiet", "lowpass_quarter"])
def test_no_false_positive(tmp_path: Path, subtype: str, name: str) -> None:
    signals = {
        "music": lambda: music_like(3, seed=6, channels=2),
        "noise": lambda: noise(3, seed=7),
        "silence": lambda: np.zeros((3 * FS, 2)),
        "quiet": lambda: noise(3, seed=8, level=3e-5),  # about 1 LSB at 16 bits
        "lowpass_quarter": lambda: lowpass(noise(3, seed=9), FS / 4),
    }
    result = detect_file(write(tmp_path / "c.wav", signals[name](), subtype))
    assert result["doubled_samples"] == {"detected": False, "parity": None, "share": 0.0, "regions": []}
    assert result["hold"] == {"detected": False, "factor": None}
    assert not result["clipping"]["detected"]
    assert result["hum"]["detected"] is False and result["non_finite_samples"] == 0


@pytest.mark.parametrize("factor", [3, 4])
def test_sample_and_hold_is_not_doubling(tmp_path: Path, factor: int) -> None:
    result = detect_file(write(tmp_path / "h.wav", hold(music_like(3, seed=10), factor)))
    assert result["hold"] == {"detected": True, "factor": factor}
    assert not result["doubled_samples"]["detected"]


@pytest.mark.parametrize("cutoff_hz", [11025.0, 16000.0])
def test_band_limit(tmp_path: Path, cutoff_hz: float) -> None:
    result = detect_file(write(tmp_path / "l.wav", lowpass(noise(3, seed=11), cutoff_hz)))
    assert result["band_limit"]["detected"]
    assert abs(result["band_limit"]["cutoff_hz"] - cutoff_hz) <= 500


@pytest.mark.parametrize("name", ["noise", "music", "doubled", "quiet"])
def test_no_band_limit_on_full_band_or_quiet(tmp_path: Path, name: str) -> None:
    x = {"noise": noise(3, seed=12), "music": music_like(3, seed=13), "doubled": double(noise(3, seed=14)),
         "quiet": lowpass(noise(3, seed=15, level=1e-4), 8000)}[name]
    assert detect_file(write(tmp_path / "n.wav", x))["band_limit"] == {"detected": False, "cutoff_hz": None}


def test_clipping_dc_and_noise_floor(tmp_path: Path) -> None:
    t = np.arange(2 * FS) / FS
    clipped = np.clip(1.6 * np.sin(2 * np.pi * 220 * t), -0.8, 0.8) + 0.05
    result = detect_file(write(tmp_path / "k.wav", clipped[:, None]))
    assert result["clipping"]["detected"] and result["clipping"]["share"] > 0.3
    assert result["dc_offset"] == pytest.approx(0.05, abs=1e-3)
    clean = detect_file(write(tmp_path / "q.wav", np.sin(2 * np.pi * 220 * t)[:, None] * 0.5))
    assert not clean["clipping"]["detected"]
    assert clean["noise_floor_dbfs"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert detect_file(write(tmp_path / "z.wav", np.zeros((FS, 1))))["noise_floor_dbfs"] == -200.0
    # a square wave sits on its peak all the time: nothing between the "clips" to rebuild them from
    square = detect_file(write(tmp_path / "s.wav", 0.3 * np.sign(np.sin(2 * np.pi * 100 * t))[:, None]))
    assert square["clipping"]["share"] > 0.99 and not square["clipping"]["detected"]
    # a slow full-scale wave lies within one int16 step of its crest for several samples: a crest, not a clip
    crest = detect_file(write(tmp_path / "c.wav", (32767 / 32768 * np.sin(2 * np.pi * 40 * t))[:, None]))
    assert not crest["clipping"]["detected"]
    # ... and so does a quiet one, by whole integer steps (at -40 dBFS: 328 steps, entered by steps of one or two)
    quiet = detect_file(write(tmp_path / "qc.wav", (0.01 * np.sin(2 * np.pi * 100 * t))[:, None]))
    assert not quiet["clipping"]["detected"]
    # clipped on one side only, with a DC offset: the other rail is a crest, this one is counted
    one_sided = detect_file(write(tmp_path / "o.wav", np.minimum(np.sin(2 * np.pi * 220 * t), 0.7)[:, None] * 0.9))
    assert one_sided["clipping"]["detected"]


def test_unreadable_file_and_table(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    failed = detect_file(bad)
    assert failed["error"] and "bad.wav" in failed["error"] and failed["sample_rate"] is None
    good = detect_file(write(tmp_path / "g.wav", double(music_like(2), 1)))
    table = format_detect_table([good, failed])
    lines = table.splitlines()
    assert lines[0].startswith("file") and "parity 1" in lines[1] and "error (below)" in lines[2]
    assert lines[-1].startswith("error:") and "bad.wav" in lines[-1]


@pytest.mark.parametrize("base", [50.0, 60.0])
def test_mains_hum_is_reported_with_its_base_and_level(tmp_path: Path, base: float) -> None:
    t = np.arange(4 * FS) / FS
    hum = 0.01 * np.sin(2 * np.pi * base * t) + 0.005 * np.sin(2 * np.pi * 3 * base * t + 1)  # -42 dBFS
    result = detect_file(write(tmp_path / "h.wav", music_like(4, seed=3, channels=2) + hum[:, None], "FLOAT"))
    assert result["hum"]["detected"] and result["hum"]["base_hz"] == base
    assert {base, 3 * base} <= set(result["hum"]["harmonics"])
    assert result["hum"]["level_dbfs"] == pytest.approx(10 * np.log10((0.01**2 + 0.005**2) / 2), abs=1.0)
    assert f"{base:g} Hz, -42 dBFS" in format_detect_table([result])


def test_nan_and_inf_samples_are_counted_and_read_as_zero(tmp_path: Path) -> None:
    clean = music_like(2, seed=4, channels=2)
    broken = clean.copy()
    broken[100, 0], broken[5000, 1], broken[7000, 1] = np.nan, np.inf, -np.inf
    result = detect_file(write(tmp_path / "n.wav", broken, "FLOAT"))
    assert result["non_finite_samples"] == 3 and result["error"] is None
    patched = clean.copy()
    patched[100, 0] = patched[5000, 1] = patched[7000, 1] = 0.0
    expected = detect_file(write(tmp_path / "z.wav", patched, "FLOAT"))
    assert result["noise_floor_dbfs"] == expected["noise_floor_dbfs"] and result["dc_offset"] == expected["dc_offset"]
    assert format_detect_table([result]).splitlines()[1].rstrip().endswith("  3")


def test_the_detect_command_expands_quoted_globs(tmp_path: Path, capsys, monkeypatch) -> None:
    from pedalchain.cli import main

    for name in ("a.wav", "b.wav"):
        write(tmp_path / name, hold(music_like(2, seed=5), 3))
    monkeypatch.chdir(tmp_path)
    assert main(["detect", "--json", "*.wav"]) == 0  # as a script calls it, no shell to expand the pattern
    results = json.loads(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in results] == ["a.wav", "b.wav"]
    assert all(r["hold"] == {"detected": True, "factor": 3} for r in results)
