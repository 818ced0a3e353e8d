"""``restorer: declip`` on synthetic clipping: unclipped samples untouched bit for bit, SNR gain, rail detection,
chunk invariance, the same output on any number of threads, the banded solver, the file runner, YAML round trip and
parameter errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import RANDOM, assert_close, plucked_notes, stream
from pedalchain.chains.runner import RunOptions, process_file
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data
from pedalchain.effects.restorers import MAX_THREADS, THREADS_ENV, restorer_threads
from pedalchain.effects.restorers.declip import DEFAULT_WEIGHTS, Declip, detect_rails
from pedalchain.effects.restorers.lapack import solve_banded_spd
from pedalchain.errors import ChainFileError, ParameterError

SR = 44100


def music(seconds: float = 3.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Stereo plucked harmonic notes (mostly below 5 kHz, like real instruments) over a -60 dB floor, peak 0.9."""
    return plucked_notes(seconds, sr, seed, note_every_s=0.2, harmonics=11, decay_per_s=4.0, peak=0.9, air=1e-3)


def clip(x: np.ndarray, over_db: float) -> tuple[np.ndarray, float]:
    level = float(np.abs(x).max()) * 10 ** (-over_db / 20)
    return np.clip(x, -np.float32(level), np.float32(level)), level


def snr(clean: np.ndarray, other: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.sum(clean ** 2) / np.sum((clean - other) ** 2))


def test_shipped_weights_exist_and_describe_their_training() -> None:
    from pedalchain.models.model_file import read_model_info

    info = read_model_info(DEFAULT_WEIGHTS)
    assert info.kind == "restorer" and info.architecture == "declip-ar"
    assert info.training["data"] and info.training["test"] and info.metrics["test"]
    assert not set(info.training["data"]) & set(info.training["test"])
    text = info.describe()
    assert "latency          5440 samples" in text
    assert "receptive field" not in text  # an emulator's notion; a restorer analyses the whole file


@pytest.mark.parametrize("over_db", [3.0, 6.0])
def test_repairs_peaks_and_leaves_the_rest_bit_exact(over_db: float) -> None:
    clean = music(seed=1)
    damaged, level = clip(clean, over_db)
    restorer = Declip()
    out = restorer.process(damaged, SR)
    assert out.shape == damaged.shape and out.dtype == np.float32
    unclipped = np.abs(damaged) < np.float32(level)
    assert np.array_equal(out[unclipped], damaged[unclipped])
    on_rail = ~unclipped
    assert on_rail.sum() > 100
    assert np.all(np.abs(out[on_rail]) >= np.float32(level) * (1 - 1e-6))  # consistent: never inside the rails
    assert np.all(np.sign(out[on_rail]) == np.sign(damaged[on_rail]))
    # (the goal, >= 6 dB at 6 dB over threshold, is measured on real recordings in
    # bench/bench_declip_dequantize.py; this synthetic signal with fast random-level notes is harder)
    gain = snr(clean, out) - snr(clean, damaged)
    assert gain >= 4.0, f"only {gain:.2f} dB better at {over_db} dB over threshold"
    assert restorer.rails[0] == pytest.approx(level, rel=1e-5)


def test_clean_input_passes_through_unchanged() -> None:
    clean = music(seed=2)
    restorer = Declip()
    assert np.array_equal(restorer.process(clean, SR), clean)
    assert restorer.rails == (None, None)
    assert "no clipping" in restorer.analyze_input(clean, SR)[0]


@pytest.mark.parametrize("rate", [48000, 192000])
def test_a_steady_int16_tone_is_not_taken_for_clipping(tmp_path: Path, rate: int) -> None:
    # every crest of a steady tone lands on (or one step under) the same integer: thousands of samples at the
    # peak, in runs of 1-3 approached slowly -- a smooth wave, not a clipped one (``chain detect`` agrees)
    t = np.arange(3 * rate) / rate
    tone = np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 550 * t)], axis=1)
    path = tmp_path / f"tone{rate}.wav"
    sf.write(path, tone, rate, subtype="PCM_16")
    audio = sf.read(path, dtype="float32", always_2d=True)[0].T.copy()
    assert np.count_nonzero(audio[0] == audio[0].max()) > 100  # the pile-up the old rule took for clipping
    restorer = Declip()
    assert "no clipping found" in restorer.analyze_input(path, rate)[0]
    assert restorer.rails == (None, None)
    assert np.array_equal(restorer.process(audio, rate), audio)


def test_a_square_wave_is_not_reconstructed() -> None:
    t = np.arange(SR) / SR
    square = (0.3 * np.sign(np.sin(2 * np.pi * 100 * t)))[None].astype(np.float32)
    restorer = Declip()
    assert "nothing between them to rebuild from" in restorer.analyze_input(square, SR)[0]
    assert restorer.rails == (None, None)
    assert np.array_equal(restorer.process(square, SR), square)


def test_one_sided_clipping_is_detected_per_rail() -> None:
    clean = music(seed=3)
    level = 0.5 * float(clean.max())
    damaged = np.minimum(clean, np.float32(level))
    positive, negative, found = detect_rails(damaged)
    assert positive == pytest.approx(level, rel=1e-5) and negative is None
    assert 0 < found.clipped[0] <= int(np.sum(damaged >= np.float32(level))) and found.clipped[1] == 0


def test_a_run_that_jumps_between_rails_keeps_each_sample_on_its_own_side() -> None:
    # a loud high tone clipped hard: runs of clipped samples cross from +rail to -rail in one step
    t = np.arange(SR) / SR
    clean = (0.9 * np.sin(2 * np.pi * 7000 * t) + 0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
    damaged, level = clip(clean, 12.0)
    flags = np.abs(damaged[0]) >= np.float32(level)
    jumps = flags[:-1] & flags[1:] & (np.sign(damaged[0, :-1]) != np.sign(damaged[0, 1:]))
    assert jumps.any()  # the case under test occurs
    out = Declip().process(damaged, SR)
    assert np.all(np.sign(out[0, flags]) == np.sign(damaged[0, flags]))
    assert np.all(np.abs(out[0, flags]) >= np.float32(level) * (1 - 1e-6))


def test_explicit_threshold_in_dbfs() -> None:
    clean = music(seed=4)
    damaged = np.clip(clean, -0.5, 0.5)
    restorer = Declip(threshold=20 * np.log10(0.5))
    out = restorer.process(damaged, SR)
    assert snr(clean, out) > snr(clean, damaged) + 3
    inside = np.abs(damaged) < 0.5
    assert np.array_equal(out[inside], damaged[inside])


def test_a_threshold_set_after_building_takes_effect_and_is_checked() -> None:
    """As a pedalboard plugin's parameter: the rails follow it (they were fixed when built, and a change was
    silently ignored)."""
    damaged = np.clip(music(seed=4), -0.5, 0.5)
    restorer = Declip(threshold=-20.0)
    restorer.threshold = 20 * np.log10(0.5)
    np.testing.assert_array_equal(restorer.process(damaged, SR), Declip(threshold=20 * np.log10(0.5)).process(
        damaged, SR))
    restorer.threshold = "auto"
    np.testing.assert_array_equal(restorer.process(damaged, SR), Declip().process(damaged, SR))
    for bad in (3.0, "loud", False, "-3 Hz"):
        with pytest.raises(ParameterError, match="threshold"):
            restorer.threshold = bad
    restorer.threshold = "-6 dBFS"  # units as other parameters take them
    assert restorer.threshold == -6.0 and restorer.rails[0] == pytest.approx(10 ** (-6 / 20), rel=1e-5)
    assert repr(restorer) == "Declip(threshold=-6.0)"


@pytest.mark.parametrize("pattern", [1, 37, 4096, 10000, RANDOM])
def test_streaming_equals_one_shot(pattern: int | str) -> None:
    seconds = 0.6 if pattern == 1 else 2.0
    damaged, level = clip(music(seconds, seed=5), 6.0)
    restorer = Declip(threshold=20 * np.log10(level))
    whole = restorer.process(damaged, SR)
    streamed = stream(restorer, damaged, SR, pattern, seed=3)
    assert_close(streamed, whole, f"declip streamed in blocks of {pattern}", atol=0.0)
    assert restorer.latency == restorer.latency_at(SR)


def test_file_runner_analyses_the_file(tmp_path: Path) -> None:
    clean = music(seed=6)
    damaged, level = clip(clean, 6.0)
    source, target = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(str(source), damaged.T, SR, subtype="FLOAT")
    chain = chain_from_yaml("steps:\n  - restorer: declip\n")
    process_file(chain, source, target, RunOptions())
    out, rate = sf.read(str(target), dtype="float32", always_2d=True)
    assert rate == SR and out.shape == damaged.T.shape
    assert snr(clean, out.T) > snr(clean, damaged) + 3
    whole = Declip().process(damaged, SR)
    assert_close(out.T, whole, "file runner vs one-shot", atol=1e-6)


def test_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    chain = chain_from_yaml("steps:\n  - restorer: declip\n    threshold: -3 dB\n")
    assert chain_to_data(chain, tmp_path)["steps"] == [{"restorer": "declip", "threshold": -3.0}]
    assert chain_to_data(chain_from_yaml("steps:\n  - restorer: declip\n"), tmp_path)["steps"] == [
        {"restorer": "declip"}]
    for bad, match in [("threshold: 3", r"threshold: 3 dBFS is out of range .*\(or 'auto'\)"),
                       ("threshold: loud", "threshold.*expected 'auto', "),
                       ("amount: 2", "amount")]:
        with pytest.raises((ParameterError, ChainFileError), match=match):
            chain_from_yaml(f"steps:\n  - restorer: declip\n    {bad}\n")
    with pytest.raises(ParameterError, match="kHz"):
        Declip(threshold=-6).process(np.zeros((2, 100), np.float32), 8000)


def test_fit_gains_is_the_least_squares_gain_per_run_length() -> None:
    from pedalchain.models.restore.fit_declip import RUN_EDGES, fit_gains

    rng = np.random.default_rng(0)
    estimate = rng.uniform(0.01, 0.5, 100000)
    lengths = np.where(np.arange(100000) % 2 == 0, 4, 40)  # buckets [3, 5) and [33, 65)
    truth = np.where(lengths == 4, 1.5, 0.8) * estimate
    gains = fit_gains({"length": lengths, "estimate": estimate, "truth": truth})
    assert gains[list(RUN_EDGES).index(3)] == pytest.approx(1.5, abs=0.01)
    assert gains[list(RUN_EDGES).index(33)] == pytest.approx(0.8, abs=0.01)
    assert gains[0] == 1.0  # an empty bucket keeps gain 1


def test_banded_solve_matches_a_dense_solve_and_refuses_an_indefinite_matrix() -> None:
    rng = np.random.default_rng(4)
    n, kd = 300, 12
    matrix = np.tril(np.triu(rng.standard_normal((n, n)), -kd), kd)
    matrix = matrix + matrix.T + np.eye(n) * 4 * kd  # symmetric, banded, diagonally dominant: positive definite
    bands = np.zeros((n, kd + 1))
    for q in range(kd + 1):
        bands[q:, kd - q] = np.diagonal(matrix, q)
    rhs = rng.standard_normal(n)
    solution = rhs.copy()
    assert solve_banded_spd(bands, solution)
    assert np.allclose(matrix @ solution, rhs, atol=1e-9)
    indefinite = np.zeros((n, kd + 1))
    indefinite[:, kd] = -1.0
    assert not solve_banded_spd(indefinite, rhs.copy())
    with pytest.raises(ValueError, match="C-contiguous float64"):
        solve_banded_spd(bands.T, rhs)


def test_output_does_not_depend_on_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    damaged, level = clip(music(2.0, seed=8), 12.0)
    threaded = Declip().process(damaged, SR)
    monkeypatch.setenv(THREADS_ENV, "1")
    assert restorer_threads() == 1
    single = Declip().process(damaged, SR)
    assert not np.array_equal(threaded, damaged)
    assert np.array_equal(threaded, single)
    for value, expected in (("3", 3), ("0", MAX_THREADS), ("two", MAX_THREADS)):
        monkeypatch.setenv(THREADS_ENV, value)
        assert restorer_threads() == expected
