"""The `chain` command end to end: real files, real plugins; every bad input gets one line, exit != 0,
no traceback, no output file, and the input untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pedalchain.cli import main

SR = 44100


def write_tone(path: Path, seconds: float = 1.0, channels: int = 2, subtype: str = "PCM_16", sr: int = SR) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([tone] * channels, axis=1).astype(np.float32), sr, subtype=subtype)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `chain` in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pedalchain.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def song(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "song.wav")


@pytest.fixture
def gain_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text("name: my\nsteps:\n  - plugin: Gain\n    gain_db: -6\n")
    return path


def test_apply_writes_beside_input_named_after_chain(tmp_path, song, gain_yaml, capsys):
    assert main(["apply", str(gain_yaml), str(song)]) == 0
    out = tmp_path / "song.my.wav"
    data, rate = sf.read(out, dtype="float32")
    source, _ = sf.read(song, dtype="float32")
    assert rate == SR and data.shape == source.shape
    assert sf.info(out).subtype == "PCM_16"
    np.testing.assert_allclose(data, source * 10 ** (-6 / 20), atol=2.5 / 32768)
    assert "song.my.wav" in capsys.readouterr().out


def test_apply_preset_by_name_and_presets_listing(tmp_path, song, capsys):
    assert main(["presets"]) == 0
    assert "remaster" in capsys.readouterr().out
    assert main(["apply", "remaster", str(song), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "song.remaster.wav").exists()


def test_apply_several_inputs_into_folder_keeps_containers(tmp_path, gain_yaml, capsys):
    a = write_tone(tmp_path / "a.wav")
    b = write_tone(tmp_path / "b.flac", subtype="PCM_24")
    assert main(["apply", str(gain_yaml), str(a), str(b), "-o", str(tmp_path / "outdir") + "/", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["output"]).name for line in lines] == ["a.wav", "b.flac"]
    assert sf.info(tmp_path / "outdir" / "b.flac").subtype == "PCM_24"
    assert all(line["clipped_samples"] == 0 and line["sample_rate"] == SR for line in lines)


def test_lossy_input_defaults_to_wav_pcm24_and_float_flac_becomes_24_bit(tmp_path, gain_yaml):
    mp3 = tmp_path / "in.mp3"
    sf.write(mp3, np.zeros((SR, 2), np.float32) + 0.1, SR)
    assert main(["apply", str(gain_yaml), str(mp3), "--quiet"]) == 0
    assert sf.info(tmp_path / "in.my.wav").subtype == "PCM_24"
    floaty = write_tone(tmp_path / "f.wav", subtype="FLOAT")
    assert main(["apply", str(gain_yaml), str(floaty), "-o", str(tmp_path / "f.flac"), "--quiet"]) == 0
    assert sf.info(tmp_path / "f.flac").subtype == "PCM_24"


def test_format_and_subtype_options(tmp_path, song, gain_yaml):
    out = tmp_path / "o.flac"
    assert main(["apply", str(gain_yaml), str(song), "-o", str(out), "--subtype", "PCM_24", "--quiet"]) == 0
    assert sf.info(out).format == "FLAC" and sf.info(out).subtype == "PCM_24"


@pytest.mark.parametrize("channels, rate", [(6, SR), (2, 96000)])
def test_an_mp3_that_cannot_hold_the_audio_is_refused_before_work(tmp_path, gain_yaml, channels, rate):
    """libsndfile's own message for 6 channels was "Format not recognised", naming the hidden temporary file."""
    source = tmp_path / "in.wav"
    sf.write(source, np.zeros((rate // 10, channels), np.float32), rate)
    result = run_cli("apply", str(gain_yaml), str(source), "-o", str(tmp_path / "out.mp3"), cwd=tmp_path)
    assert result.returncode == 1 and "MP3 holds 1 or 2 channels at 8, 11.025" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "my.yaml"]


def test_tail_extends_output(tmp_path, song):
    yaml_path = tmp_path / "verb.yaml"
    yaml_path.write_text("steps:\n  - plugin: Reverb\n    room_size: 0.9\n")
    out = tmp_path / "out.flac"
    assert main(["apply", str(yaml_path), str(song), "-o", str(out), "--tail", "3", "--quiet"]) == 0
    data, _ = sf.read(out)
    assert len(data) == SR + 3 * SR
    assert np.abs(data[SR + SR // 2 :]).max() > 1e-3  # the reverb tail really is there


def test_clipping_is_counted_and_warned(tmp_path, song, capsys):
    yaml_path = tmp_path / "loud.yaml"
    yaml_path.write_text("steps:\n  - plugin: Gain\n    gain_db: 12\n")
    assert main(["apply", str(yaml_path), str(song)]) == 0
    captured = capsys.readouterr()
    assert "clipped" in captured.err
    assert main(["apply", str(yaml_path), str(song), "--json", "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["clipped_samples"] > 1000


def test_check_prints_chain_and_latency(tmp_path, capsys):
    yaml_path = tmp_path / "lim.yaml"
    yaml_path.write_text("steps:\n  - plugin: BrickwallLimiter\n    lookahead_ms: 5\n")
    assert main(["check", str(yaml_path), "--sample-rate", "48000"]) == 0
    out = capsys.readouterr().out
    assert "BrickwallLimiter" in out and "latency at 48000 Hz" in out
    latency = int(out.split("latency at 48000 Hz, 2 ch: ")[1].split()[0])
    assert latency == 240  # 5 ms at 48 kHz


@pytest.mark.parametrize("option, value", [("--channels", "0"), ("--channels", "-2"), ("--sample-rate", "0"),
                                           ("--sample-rate", "nan")])
def test_check_refuses_a_format_that_cannot_be(tmp_path, option, value):
    """``--channels 0`` ended in a traceback from the doubled-samples restorer; a rate of 0 was blamed on the YAML."""
    result = run_cli("check", "remaster", option, value, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"chain: error: {option}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_plugins_lists_builtins_with_units(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "LowpassFilter" in out and "cutoff_frequency_hz" in out and "Hz" in out


def test_a_reader_that_stops_early_gets_no_error(tmp_path: Path):
    """`chain plugins | head -1`: the closed pipe ends the listing quietly, not with 'chain: error: Broken pipe'."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "pedalchain.cli", "plugins"], cwd=tmp_path, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode != 0
    assert result.stderr == ""


# -- bad input --------------------------------------------------------------------------------------------


def _bad_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BAD_CHAINS = {
    "yaml-syntax": ("steps:\n  - plugin: Gain\n   gain_db: [\n", ["bad.yaml:"]),
    "unknown-plugin": ("steps:\n  - plugin: Compresor\n", ["bad.yaml:2", "Compressor"]),
    "unknown-step-kind": ("steps:\n  - plugn: Gain\n", ["bad.yaml:2", "plugin"]),
    "unknown-parameter": ("steps:\n  - plugin: Gain\n    gain: 3\n", ["bad.yaml:3", "gain_db"]),
    "out-of-range": ("steps:\n  - plugin: Reverb\n    room_size: 3\n", ["bad.yaml:3", "room_size", "1"]),
    "wrong-type": ("steps:\n  - plugin: Gain\n    gain_db: loud\n", ["bad.yaml:3", "gain_db"]),
    "python-tag": ("steps: !!python/object/apply:os.system ['echo hi']\n", ["bad.yaml:1", "not allowed"]),
    "vst3-missing": ("steps:\n  - vst3: /nonexistent/Thing.vst3\n", ["bad.yaml:2", "Thing.vst3"]),
    "vst3-not-plugin": ("steps:\n  - vst3: fake.vst3\n", ["bad.yaml:2", "fake.vst3"]),
    "min-rate-not-a-rate": ("steps:\n  - plugin: Gain\n    min_rate: fast\n", ["bad.yaml:3", "min_rate"]),
    "min-rate-negative": ("steps:\n  - plugin: Gain\n    min_rate: -3 kHz\n", ["bad.yaml:3", "min_rate", "positive"]),
    "model-not-a-model": ("steps:\n  - model: fake.safetensors\n",
                          ["bad.yaml:2", "fake.safetensors", "not a safetensors"]),
    "restorer-model-not-a-model": ("steps:\n  - restorer: declip\n    model: fake.safetensors\n",
                                   ["bad.yaml:2", "fake.safetensors", "not a safetensors"]),
    "restorer-model-missing": ("steps:\n  - restorer: dequantize\n    model: gone.safetensors\n",
                               ["bad.yaml:2", "model: no such model file", "gone.safetensors"]),
}
# Depends on the file's sample rate, so it is a per-file failure (exit 1), found before any output is written.
NYQUIST = "steps:\n  - plugin: LowpassFilter\n    cutoff_frequency_hz: 30 kHz\n"


@pytest.mark.parametrize("case", sorted(BAD_CHAINS))
def test_bad_chain_file_is_one_line_exit_2_no_output(tmp_path, song, case):
    text, expected = BAD_CHAINS[case]
    (tmp_path / "fake.vst3").write_bytes(b"not a plugin")
    (tmp_path / "fake.safetensors").write_bytes(b"not a model")
    yaml_path = _bad_yaml(tmp_path, text)
    before, listing = digest(song), sorted(os.listdir(tmp_path))
    result = run_cli("apply", str(yaml_path), str(song), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chain: error:"), result.stderr
    for fragment in expected:
        assert fragment in lines[0]
    assert digest(song) == before and sorted(os.listdir(tmp_path)) == listing


def test_cutoff_above_the_files_nyquist_is_refused(tmp_path, song):
    yaml_path = _bad_yaml(tmp_path, NYQUIST)
    result = run_cli("apply", str(yaml_path), str(song), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad.yaml:2" in result.stderr and "Nyquist frequency of 44100 Hz audio" in result.stderr
    assert not (tmp_path / "song.bad.wav").exists()


@pytest.mark.parametrize("text, rate, says", [
    ("steps:\n  - restorer: bandwidth\n    cutoff: 50000\n", SR, "bad.yaml:2: restorer: bandwidth.cutoff: 50000 Hz"),
    ("steps:\n  - restorer: dequantize\n  - restorer: doubled-samples\n  - plugin: Gain\n", 16000,
     "bad.yaml:3: restorer: doubled-samples: runs at 32–50 kHz"),
])
def test_a_restorer_setting_wrong_for_the_files_rate_names_the_yaml_line(tmp_path, text, rate, says):
    song = write_tone(tmp_path / "song.wav", sr=rate)
    result = run_cli("apply", str(_bad_yaml(tmp_path, text)), str(song), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert not (tmp_path / "song.bad.wav").exists()


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return path


def _garbage_mp3(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    return path


def _zero_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "zero.flac"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path: Path) -> Path:
    path = write_tone(tmp_path / "truncated.wav", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 2), np.float32), SR)
    return path


def _nonfinite(tmp_path: Path) -> Path:
    path = tmp_path / "nan.wav"
    data = np.zeros((SR, 2), np.float32)
    data[SR // 2, 0] = np.nan
    data[SR // 3, 1] = np.inf
    sf.write(path, data, SR, subtype="FLOAT")
    return path


BAD_INPUTS = {
    "missing": (lambda tmp: tmp / "nope.wav", ["nope.wav", "no such file"]),
    "garbage": (_garbage, ["garbage.wav", "not a readable audio file"]),
    "garbage-mp3": (_garbage_mp3, ["garbage.mp3", "not a readable audio file", "no MPEG audio frames"]),
    "zero-bytes": (_zero_bytes, ["zero.flac", "is empty (0 bytes)"]),
    "truncated": (_truncated, ["truncated.wav", "truncated"]),
    "zero-length": (_empty, ["empty.wav", "no audio"]),
    "nan-inf": (_nonfinite, ["nan.wav", "NaN", "--sanitize"]),
    "folder": (lambda tmp: (tmp / "dir.wav").mkdir() or tmp / "dir.wav", ["dir.wav", "folder"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_file_is_one_line_exit_1_no_output(tmp_path, gain_yaml, case):
    make, expected = BAD_INPUTS[case]
    source = make(tmp_path)
    before = digest(source) if source.is_file() else None
    listing = sorted(os.listdir(tmp_path))
    result = run_cli("apply", str(gain_yaml), str(source), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in expected:
        assert fragment in lines[0]
    assert sorted(os.listdir(tmp_path)) == listing
    if before is not None:
        assert digest(source) == before


def test_nonfinite_input_through_an_analysing_chain_is_still_one_line(tmp_path):
    # restorer: auto analyses the whole file before the render refuses it: the analysis must not warn first
    chain = tmp_path / "auto.yaml"
    chain.write_text("steps:\n  - restorer: auto\n")
    source = _nonfinite(tmp_path)
    result = run_cli("apply", str(chain), str(source), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NaN" in lines[0] and "--sanitize" in lines[0], result.stderr
    assert not (tmp_path / "nan.auto.wav").exists()


def test_unreadable_input(tmp_path, song, gain_yaml):
    command = [sys.executable, "-m", "pedalchain.cli", "apply", str(gain_yaml), str(song)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    os.chmod(song, 0)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.chmod(song, 0o644)
    assert result.returncode == 1, result.stderr
    assert "permission denied" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "song.my.wav").exists()


def test_sanitize_replaces_nonfinite_and_warns(tmp_path, gain_yaml):
    source = _nonfinite(tmp_path)
    result = run_cli("apply", str(gain_yaml), str(source), "--sanitize", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 NaN/Inf input samples replaced" in result.stderr
    data, _ = sf.read(tmp_path / "nan.my.wav")
    assert np.isfinite(data).all() and np.abs(data).max() == 0.0


def test_output_equal_to_input_is_refused(tmp_path, song, gain_yaml):
    before = digest(song)
    result = run_cli("apply", str(gain_yaml), str(song), "-o", str(song), "--overwrite", cwd=tmp_path)
    assert result.returncode == 1 and "is the input" in result.stderr and "Traceback" not in result.stderr
    assert digest(song) == before


def test_existing_output_needs_overwrite(tmp_path, song, gain_yaml):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    result = run_cli("apply", str(gain_yaml), str(song), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 1 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    assert run_cli("apply", str(gain_yaml), str(song), "-o", str(out), "--overwrite", cwd=tmp_path).returncode == 0
    assert sf.info(out).frames == SR


def test_unwritable_output_folder(tmp_path, song, gain_yaml):
    target = Path("/proc/pedalchain-cannot-write-here.wav")  # not writable even for root
    result = run_cli("apply", str(gain_yaml), str(song), "-o", str(target), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "/proc" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_colliding_outputs_refused_before_work(tmp_path, gain_yaml):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a, b = write_tone(tmp_path / "x" / "s.wav"), write_tone(tmp_path / "y" / "s.wav")
    result = run_cli("apply", str(gain_yaml), str(a), str(b), "-o", str(tmp_path / "out") + "/", cwd=tmp_path)
    assert result.returncode == 2 and "both" in result.stderr
    assert not any((tmp_path / "out").iterdir())


def test_one_bad_file_does_not_stop_the_others(tmp_path, song, gain_yaml):
    garbage = _garbage(tmp_path)
    result = run_cli("apply", str(gain_yaml), str(garbage), str(song), "-o", str(tmp_path / "o") + "/", cwd=tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "o" / "song.wav").exists() and not (tmp_path / "o" / "garbage.wav").exists()


@pytest.mark.parametrize("signum, status, loudness, tail", [
    (signal.SIGINT, 130, False, False),
    (signal.SIGTERM, 143, True, False),  # kill, timeout, a service manager: the loudness pass's scratch file too
    (signal.SIGHUP, 129, False, False),
    (signal.SIGINT, 130, False, True),  # while the tail is rendered: that loop did not look at the stop
])
def test_a_signal_mid_file_leaves_no_output(tmp_path, signum, status, loudness, tail):
    long_input = write_tone(tmp_path / "long.wav", seconds=2.0 if tail else 600.0, channels=2)
    yaml_path = tmp_path / "slow.yaml"
    yaml_path.write_text("steps:\n  - plugin: Reverb\n  - plugin: Chorus\n  - plugin: Phaser\n"
                         + ("loudness: -14\n" if loudness else ""))
    process = subprocess.Popen(
        [sys.executable, "-m", "pedalchain.cli", "apply", str(yaml_path), str(long_input), "--block", "1024",
         "--tail", "600" if tail else "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.name.endswith((".partial", ".rf64")) for p in tmp_path.iterdir()):
        time.sleep(0.05)
    assert any(p.name.endswith((".partial", ".rf64")) for p in tmp_path.iterdir()), "never started writing"
    time.sleep(1.0)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert ("terminated" if signum != signal.SIGINT else "interrupted") in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav", "slow.yaml"]


def test_a_tail_of_hours_is_refused(tmp_path, song, gain_yaml):
    result = run_cli("apply", str(gain_yaml), str(song), "--tail", "1e9", cwd=tmp_path)
    assert result.returncode == 2 and "--tail: tail must be 0 to 600 seconds" in result.stderr, result.stderr


# -- model, detection and comparison commands ------------------------------------------------------------


def test_models_and_info_describe_shipped_models(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "lowpass-5k" in listing and "ESR" in listing
    assert main(["info", "lowpass-5k"]) == 0
    info = capsys.readouterr().out
    assert "architecture     fir" in info and "receptive field  256 samples" in info and "48000 Hz" in info
    # the restorers' shipped weights are listed too, and described by the restorer's name
    assert "denoise          denoise-gain-mlp" in listing and "runs at the file's rate, restorer" in listing
    assert main(["info", "denoise"]) == 0
    info = capsys.readouterr().out
    assert "kind             restorer" in info and "validation_at_10db" in info and "test_files" in info


def test_a_restorer_named_as_a_model_step_points_to_the_restorer_step(tmp_path):
    result = run_cli("check", str(_bad_yaml(tmp_path, "steps:\n  - model: denoise\n")), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "bad.yaml:2" in result.stderr and "use '- restorer: denoise'" in result.stderr


def test_info_on_a_missing_model_is_one_line(tmp_path):
    result = run_cli("info", str(tmp_path / "nope.safetensors"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # a bad model file is bad usage
    assert len(result.stderr.strip().splitlines()) == 1 and "nope.safetensors" in result.stderr
    result = run_cli("info", "denoyse", cwd=tmp_path)  # the names it takes include the restorers'
    assert result.returncode == 2 and "did you mean 'denoise'?" in result.stderr and "bandwidth" in result.stderr


def test_detect_json_reports_doubled_samples_and_unreadable_files(tmp_path, capsys):
    rng = np.random.default_rng(3)
    clean = rng.standard_normal((2 * SR, 2)).astype(np.float32) * 0.2
    doubled = clean.copy()
    doubled[1::2] = doubled[::2]
    sf.write(tmp_path / "clean.wav", clean, SR, subtype="FLOAT")
    sf.write(tmp_path / "doubled.wav", doubled, SR, subtype="FLOAT")
    files = [str(tmp_path / name) for name in ("clean.wav", "doubled.wav", "missing.wav")]
    assert main(["detect", *files, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [entry["doubled_samples"]["detected"] for entry in report[:2]] == [False, True]
    assert report[1]["doubled_samples"]["parity"] == 0 and report[2]["error"]
    for entry in report[:2]:  # the documented schema, key by key
        assert isinstance(entry["file"], str) and entry["error"] is None
        assert entry["sample_rate"] == SR and entry["channels"] == 2 and entry["duration_s"] == pytest.approx(2.0)
        doubled = entry["doubled_samples"]
        assert isinstance(doubled["detected"], bool) and doubled["parity"] in (0, 1, None)
        assert 0.0 <= doubled["share"] <= 1.0
        assert all(len(region) == 2 and 0 <= region[0] < region[1] <= 2.0 for region in doubled["regions"])
        assert isinstance(entry["hold"]["detected"], bool) and entry["hold"]["factor"] in (None, *range(2, 65))
        assert isinstance(entry["band_limit"]["detected"], bool)
        assert entry["band_limit"]["cutoff_hz"] is None or entry["band_limit"]["cutoff_hz"] > 0
        assert isinstance(entry["clipping"]["detected"], bool) and 0.0 <= entry["clipping"]["share"] <= 1.0
        assert isinstance(entry["dc_offset"], float) and isinstance(entry["noise_floor_dbfs"], float)
    assert report[1]["doubled_samples"]["regions"] == [[0.0, pytest.approx(2.0, abs=0.05)]]


def test_compare_json_measures_a_gain_change(tmp_path, song, gain_yaml, capsys):
    assert main(["apply", str(gain_yaml), str(song), "--quiet"]) == 0
    assert main(["compare", str(song), str(tmp_path / "song.my.wav"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lag_samples"] == 0 and result["si_sdr_db"] > 40  # same shape, only quieter
    assert result["snr_db"] == pytest.approx(-20 * np.log10(1 - 10 ** (-6 / 20)), abs=0.2)


def test_compare_says_when_the_files_lengths_differ(tmp_path, song, capsys):
    """The shorter file sets what is compared: a one-sample candidate scored as a good match, silently."""
    sf.write(tmp_path / "one.wav", np.full((1, 2), 0.5, np.float32), SR)
    assert main(["compare", str(song), str(tmp_path / "one.wav")]) == 0
    assert "only 0.00 s of" in capsys.readouterr().out
    assert main(["compare", str(song), str(song)]) == 0
    assert "only" not in capsys.readouterr().out


def test_a_preset_name_is_not_shadowed_by_a_folder_of_that_name(tmp_path, monkeypatch):
    """``chain apply lofi in/ -o lofi/`` run twice: the second run read the folder as the chain file."""
    from pedalchain.chains.yaml_io import presets_dir, resolve_chain_path

    (tmp_path / "lofi").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_chain_path("lofi") == presets_dir() / "lofi.yaml"


def test_an_output_extension_against_format_is_bad_usage(tmp_path, song, gain_yaml):
    """It failed each file in turn (exit 1); it is the command line that is wrong (exit 2), before any work."""
    result = run_cli("apply", str(gain_yaml), str(song), "-o", "x.wav", "--format", "mp3", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "chain: error: x.wav: output extension '.wav' does not match --format MP3"
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "x.mp3").exists()
