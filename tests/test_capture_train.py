"""Tiny captures on CPU (seconds each): FIR of a low-pass, Wiener-Hammerstein of a drive, grey-box compressor,
the auto loop, Ctrl-C, streaming contracts and the `chain train` command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import torch
from pedalchain.models.capture.excitation import make_excitation
from pedalchain.models.capture.families import GreyBoxCompressor, WienerHammerstein
from pedalchain.models.capture.pairing import prepare_pair
from pedalchain.models.capture.trainer import train_emulator

RATE = 16000


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def excitation():
    return make_excitation(RATE)


def _pair(excitation, plugin):
    return prepare_pair(excitation.audio, plugin(excitation.audio, RATE), RATE, excitation=excitation)


def _esr(predicted: np.ndarray, target: np.ndarray) -> float:
    target = target.astype(np.float64)
    return float(np.sum((target - predicted) ** 2) / np.sum(target**2))


def test_auto_captures_a_lowpass_with_the_fir_and_stops_there(excitation) -> None:
    pair = _pair(excitation, pedalboard.LowpassFilter(cutoff_frequency_hz=1000))
    result = train_emulator(pair, "auto", target_esr=1e-6, budget_s=60)
    assert result.family == "fir" and result.reached
    assert result.validation_esr < 1e-8
    assert [f.family for f in result.families] == ["fir"]


def test_alternating_least_squares_finds_a_hammerstein_device() -> None:
    from pedalchain.models.capture.trainer import fit_hammerstein
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12, 2400)) * np.logspace(-2, 0, 12)[:, None]).astype(np.float32)
    b, a = [0.02, 0.04, 0.02], [1.0, -1.6, 0.7]  # a resonant low-pass: a long, ringing response
    y = lfilter(b, a, np.tanh(3 * x), axis=1)[:, 400:]
    slopes = np.array([0.5, 1.0, 2.0, 3.0, 6.0])

    def basis(rows):
        return np.concatenate([rows[..., None], np.tanh(rows[..., None] * slopes)], axis=-1).astype(np.float64)

    h, c = fit_hammerstein(x, y, 400, 128, np.eye(1, 128)[0], basis)
    shaped = basis(x) @ c
    predicted = np.stack([np.convolve(row, h)[: x.shape[1]] for row in shaped])[:, 400:]
    assert _esr(predicted, y) < 1e-4
    # the filter it started from (a unit impulse: no filter at all) is far from it
    assert _esr(np.tanh(3 * x[:, 400:]), y) > 0.1


def test_wiener_hammerstein_captures_a_drive(excitation) -> None:
    drive = pedalboard.Pedalboard([pedalboard.Distortion(drive_db=12), pedalboard.LowpassFilter(3000)])
    pair = _pair(excitation, drive)
    result = train_emulator(pair, "wiener-hammerstein", target_esr=5e-3, budget_s=20)
    assert result.validation_esr < 1e-2
    # the linear FIR cannot: the structured model is what makes the difference
    assert train_emulator(pair, "fir", budget_s=10).validation_esr > 10 * result.validation_esr


def test_grey_box_compressor_recovers_pedalboards_compressor(excitation) -> None:
    pair = _pair(excitation, pedalboard.Compressor(threshold_db=-24, ratio=4, attack_ms=5, release_ms=50))
    result = train_emulator(pair, "compressor", target_esr=1e-3, budget_s=40)
    assert result.validation_esr < 1e-2


def test_ctrl_c_keeps_the_best_model_so_far(excitation) -> None:
    drive = pedalboard.Pedalboard([pedalboard.Distortion(drive_db=12), pedalboard.LowpassFilter(3000)])
    pair = _pair(excitation, drive)
    seen = []

    def progress(update: dict) -> None:
        seen.append(update)
        if update["family"] == "wiener-hammerstein":
            raise KeyboardInterrupt

    result = train_emulator(pair, "auto", target_esr=1e-9, budget_s=60, progress=progress)
    assert result.interrupted
    assert result.family == "wiener-hammerstein" and result.model is not None
    assert result.validation_esr == pytest.approx(seen[-1]["best_esr"])


def test_the_budget_is_work_so_a_rerun_fits_the_same_model(excitation) -> None:
    """The budget runs out on the work clock, not the wall clock: with every family in turn given a slice of
    it (auto, a target out of reach), the second run is given different wall time and must not notice."""
    drive = pedalboard.Pedalboard([pedalboard.Distortion(drive_db=12), pedalboard.LowpassFilter(3000)])
    dry = excitation.audio[: 20 * RATE]  # 20 s: enough work for every family within the budget
    pair = prepare_pair(dry, drive(dry, RATE), RATE, rendered=True)
    first = train_emulator(pair, "auto", target_esr=1e-9, budget_s=12)
    # a busy machine, as far as a wall clock could tell: every checkpoint a quarter second late
    second = train_emulator(pair, "auto", target_esr=1e-9, budget_s=12, progress=lambda update: time.sleep(0.25))
    assert [r.family for r in first.families if r.model is not None] == ["fir", "wiener-hammerstein", "compressor",
                                                                         "lstm", "wavenet"]
    assert [r.validation_esr for r in first.families] == [r.validation_esr for r in second.families]
    assert first.family == second.family and first.seconds == second.seconds
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name


@pytest.mark.parametrize("model", [WienerHammerstein(8, 16, 4), GreyBoxCompressor("peak", "level"),
                                   GreyBoxCompressor("rms", "gain", stereo_linked=True)],
                         ids=["wiener-hammerstein", "compressor-peak-level", "compressor-rms-gain-linked"])
def test_streaming_matches_whole_buffer(model) -> None:
    if isinstance(model, GreyBoxCompressor):
        model.set_parameters(-30.0, 4.0, 1.0, 30.0, knee_db=3.0)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-0.8, 0.8, (2, 5000)).astype(np.float32))
    with torch.no_grad():
        whole = model(x)
        state = model.initial_state(2, torch.device("cpu"))
        parts, start = [], 0
        for size in (1, 7, 512, 1000, 3480):
            parts.append(model.forward_stream(x[:, start : start + size], state))
            start += size
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)


def test_cli_target_capture_writes_model_report_and_loads_as_a_model_step(tmp_path: Path) -> None:
    from pedalchain.chains.yaml_io import chain_from_yaml

    preset = Path(__file__).resolve().parent.parent / "chains" / "presets" / "capture-lowpass.yaml"
    output = tmp_path / "lowpass.safetensors"
    command = [sys.executable, "-m", "pedalchain.cli", "train", "emulator", "--target", str(preset), "-o",
               str(output), "--model", "fir", "--minutes", "1", "--sample-rate", str(RATE), "--target-esr", "1e-6",
               "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "validation ESR" in done.stdout
    report = json.loads((tmp_path / "lowpass.report.json").read_text())
    assert report["family"] == "fir" and report["validation"]["esr"] < 1e-8
    assert set(report["validation"]["esr_by_level"]) == {"below -40 dBFS", "-40 to -20 dBFS", "-20 to -6 dBFS",
                                                         "above -6 dBFS"}
    assert report["real_time_factor"]["whole_file"] > 1.0
    assert (tmp_path / "lowpass.report.png").read_bytes()[:4] == b"\x89PNG"
    chain = chain_from_yaml(f"steps:\n  - model: {output}\n", source=tmp_path / "use.yaml")
    audio = (np.random.default_rng(2).standard_normal((1, RATE)) * 0.2).astype(np.float32)
    expected = pedalboard.LowpassFilter(cutoff_frequency_hz=1000)(audio, RATE)
    assert _esr(chain.process(audio, RATE), expected) < 1e-6


def test_cli_dry_wet_pair_detects_latency(tmp_path: Path) -> None:
    from pedalboard.io import AudioFile
    from pedalchain.cli import main

    dry_path = tmp_path / "dry.wav"
    assert main(["train", "excitation", "-o", str(dry_path), "--sample-rate", str(RATE)]) == 0
    with AudioFile(str(dry_path)) as stream:
        dry = stream.read(stream.frames)
    wet = np.concatenate([np.zeros((1, 77), np.float32), pedalboard.LowpassFilter(2000)(dry, RATE)], axis=1)
    with AudioFile(str(tmp_path / "wet.wav"), "w", RATE, 1, bit_depth=32) as stream:
        stream.write(wet)
    output = tmp_path / "amp.safetensors"
    code = main(["train", "emulator", "--dry", str(dry_path), "--wet", str(tmp_path / "wet.wav"), "-o", str(output),
                 "--model", "fir", "--minutes", "1", "--target-esr", "1e-6", "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "amp.report.json").read_text())
    assert report["latency_samples"] == 77
    assert report["validation"]["esr"] < 1e-8
    assert {c["name"]: c["passed"] for c in report["checks"]}["check_repeatability"]


@pytest.mark.parametrize("extra, message", [
    (["--minutes", "inf"], "--minutes must be positive"),
    (["--extra-audio", "nowhere"], "--extra-audio goes with --target"),
    (["--sample-rate", "12345"], "--sample-rate goes with --target"),
])
def test_cli_refuses_options_that_would_be_ignored_or_break_late(tmp_path: Path, capsys, extra, message) -> None:
    from pedalchain.cli import main

    code = main(["train", "emulator", "--dry", "d.wav", "--wet", "w.wav", "-o", str(tmp_path / "m.safetensors"),
                 *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_cli_refuses_mismatched_rates_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pedalboard.io import AudioFile
    from pedalchain.cli import main

    for name, rate in (("dry.wav", 48000), ("wet.wav", 44100)):
        with AudioFile(str(tmp_path / name), "w", rate, 1) as stream:
            stream.write(np.zeros((1, rate), np.float32))
    code = main(["train", "emulator", "--dry", str(tmp_path / "dry.wav"), "--wet", str(tmp_path / "wet.wav"), "-o",
                 str(tmp_path / "m.safetensors")])
    assert code != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "wet.wav" in error[0] and "44100 Hz" in error[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_a_pair_too_short_for_the_family_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1.2 s passes the 1 s minimum but holds no 2.25 s row of the compressor family: a traceback before."""
    from pedalboard.io import AudioFile
    from pedalchain.cli import main

    rate = 48000
    dry = (0.3 * np.random.default_rng(1).standard_normal((1, int(1.2 * rate)))).astype(np.float32)
    for name, audio in (("dry.wav", dry), ("wet.wav", np.tanh(3 * dry))):
        with AudioFile(str(tmp_path / name), "w", rate, 1) as stream:
            stream.write(audio)
    code = main(["train", "emulator", "--dry", str(tmp_path / "dry.wav"), "--wet", str(tmp_path / "wet.wav"),
                 "--model", "compressor", "--minutes", "0.2", "-o", str(tmp_path / "m.safetensors")])
    error = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 1 and len(error) == 1, error
    assert "shorter than one training row" in error[0] and "m.safetensors" in error[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_excitation_with_extra_audio_that_is_no_folder_is_bad_usage(tmp_path: Path, capsys) -> None:
    from pedalchain.cli import main

    code = main(["train", "excitation", "-o", str(tmp_path / "dry.wav"), "--extra-audio", str(tmp_path / "none")])
    assert code == 2 and "--extra-audio must be a folder of audio files" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_an_empty_wet_file_says_so(tmp_path: Path, capsys) -> None:
    from pedalboard.io import AudioFile
    from pedalchain.cli import main

    with AudioFile(str(tmp_path / "dry.wav"), "w", 48000, 1) as stream:
        stream.write(np.zeros((1, 48000), np.float32))
    with AudioFile(str(tmp_path / "wet.wav"), "w", 48000, 1) as stream:
        stream.write(np.zeros((1, 0), np.float32))
    code = main(["train", "emulator", "--dry", str(tmp_path / "dry.wav"), "--wet", str(tmp_path / "wet.wav"), "-o",
                 str(tmp_path / "m.safetensors")])
    assert code == 1 and "wet.wav: holds no audio (0 samples)" in capsys.readouterr().err
