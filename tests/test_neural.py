"""Neural processors: streaming contract, resampling, model files, the ``model:`` step, shipped models.

Real torch, real files in temporary folders, seeded signals and weights; no mocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from helpers import assert_close, noise_signal

torch = pytest.importorskip("torch", reason="neural tests need torch: pip install '.[test]'")

from pedalchain import ChainFileError, ModelFileError, ParameterError, load_chain  # noqa: E402
from pedalchain.chains.runner import RunOptions, process_file  # noqa: E402
from pedalchain.effects.neural import NeuralProcessor, StreamingResampler  # noqa: E402
from pedalchain.models.fir import FIR  # noqa: E402
from pedalchain.models.lstm import LSTM  # noqa: E402
from pedalchain.models.model_file import (  # noqa: E402
    FORMAT_VERSION,
    describe_model_file,
    describe_shipped_models,
    load_model,
    read_model_info,
    save_model,
    shipped_models,
)

SR = 48000
TOLERANCE = 1e-5
TRAINING = {"data": "seeded random weights (test fixture)", "seed": 0, "duration_s": 0.0}
BLOCK_PATTERNS = [1, 7, 512, 4096, 65536, "random"]


# -- fixtures -----------------------------------------------------------------------------------------------------
def make_fir(taps: int = 64, seed: int = 0, latency: int = 0) -> FIR:
    torch.manual_seed(seed)
    model = FIR(taps=taps, latency=latency)
    with torch.no_grad():
        model.weight.copy_(torch.randn(taps) * torch.exp(-torch.arange(taps) / 12.0) * 0.5)
    return model


def make_lstm(hidden: int = 8, seed: int = 0) -> LSTM:
    torch.manual_seed(seed)
    model = LSTM(hidden_size=hidden)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(2.0)  # livelier dynamics than the default init: state matters more
    return model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_model(folder / "fir.safetensors", make_fir(), sample_rate=SR, training=TRAINING, metrics={"esr": 0.5})
    save_model(folder / "lstm.safetensors", make_lstm(), sample_rate=SR, training=TRAINING, metrics={})
    save_model(folder / "restorer.safetensors", make_fir(seed=3), sample_rate=SR, training=TRAINING, metrics={},
               kind="restorer")
    return folder


def load(models_dir: Path, name: str) -> NeuralProcessor:
    return NeuralProcessor.load(models_dir / f"{name}.safetensors", device="cpu")


def block_sizes(pattern: int | str, seed: int = 0) -> Iterator[int]:
    """A constant size, or seeded sizes log-uniform from 1 to 65536 samples."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(pattern) if pattern != "random" else int(np.exp(rng.uniform(0.0, np.log(65537))))


def stream(processor, audio: np.ndarray, sample_rate: float, pattern: int | str, seed: int = 0) -> np.ndarray:
    """reset(), stream ``audio`` and ``latency`` zeros in blocks, drop the first ``latency`` samples."""
    processor.reset()
    latency = processor.latency_at(sample_rate, audio.shape[0] if audio.ndim == 2 else 1)
    processor.reset()
    padded = np.concatenate([audio, np.zeros(audio.shape[:-1] + (latency,), np.float32)], axis=-1)
    outputs, start, sizes = [], 0, block_sizes(pattern, seed)
    while start < padded.shape[-1]:
        block = padded[..., start : start + next(sizes)]
        out = processor.process(block, sample_rate, reset=False)
        assert out.shape == block.shape, f"block of {block.shape} came back as {out.shape}"
        outputs.append(out)
        start += block.shape[-1]
    assert processor.latency == latency
    return np.concatenate(outputs, axis=-1)[..., latency:]


def signal(channels: int, pattern: int | str, seed: int = 1) -> np.ndarray:
    """Test audio: short for tiny blocks (per-call overhead), 1.5 s otherwise (65536-sample blocks split it)."""
    length = {1: 3000, 7: 12000}.get(pattern, int(1.5 * SR))
    audio = noise_signal(channels, length, seed)
    return audio[0] if channels == 1 else audio


# -- streaming contract --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", BLOCK_PATTERNS)
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("name", ["fir", "lstm"])
def test_any_block_split_equals_whole_buffer(models_dir, name, channels, pattern):
    processor = load(models_dir, name)
    audio = signal(channels, pattern)
    whole = processor(audio, SR)
    assert whole.shape == audio.shape and whole.dtype == np.float32
    assert processor.latency == 0
    assert_close(stream(processor, audio, SR, pattern), whole, f"{name} {channels} ch, blocks {pattern}", TOLERANCE)


@pytest.mark.parametrize("rate", [SR, 44100])
@pytest.mark.parametrize("name", ["fir", "lstm"])
def test_empty_input_gives_empty_output(models_dir, name, rate):
    """As pedalboard's plugins do; at the model's own rate the FIR's convolution had raised on it."""
    processor = load(models_dir, name)
    assert processor(np.zeros((2, 0), np.float32), rate).shape == (2, 0)
    assert processor(np.zeros(0, np.float32), rate).shape == (0,)


def test_channels_are_independent_streams(models_dir):
    processor = load(models_dir, "lstm")
    stereo = noise_signal(2, SR // 2, seed=4)
    both = processor(stereo, SR)
    assert_close(both[1], processor(stereo[1], SR), "right channel alone vs in stereo", TOLERANCE)
    assert np.abs(both[0] - both[1]).max() > 1e-3


def test_lstm_starts_from_the_state_silence_leaves_behind(models_dir):
    """No prewarm needed: a fresh stream continues exactly like one fed a long silence first."""
    processor = load(models_dir, "lstm")
    audio = noise_signal(1, SR // 4, seed=5)[0]
    after_silence = processor(np.concatenate([np.zeros(SR, np.float32), audio]), SR)[SR:]
    assert_close(processor(audio, SR), after_silence, "fresh vs after 1 s of silence", TOLERANCE)
    silent_output = processor(np.zeros(4096, np.float32), SR)
    assert np.ptp(silent_output) < 1e-5, "silence in must give a constant out (no start-up transient)"


@pytest.mark.parametrize("name", ["fir", "lstm"])
def test_model_forward_equals_streamed_splits(models_dir, name):
    model, _ = load_model(models_dir / f"{name}.safetensors")
    x = torch.from_numpy(noise_signal(3, 20000, seed=6))
    with torch.inference_mode():
        whole = model(x)
        state = model.initial_state(3, torch.device("cpu"))
        cuts = [0, 1, 2, 9, 500, 511, 4096, 12000, 20000]
        parts = [model.forward_stream(x[:, a:b], state) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert_close(torch.cat(parts, dim=1).numpy(), whole.numpy(), f"{name} forward_stream splits", TOLERANCE)


# -- sample rates ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", [1, 7, 512, "random"])
@pytest.mark.parametrize("name", ["fir", "lstm"])
def test_resampling_into_a_48k_model_is_chunk_invariant(models_dir, name, pattern):
    processor = load(models_dir, name)
    audio = noise_signal(2, {1: 2000, 7: 8000}.get(pattern, 44100), seed=7)
    whole = processor(audio, 44100)
    latency = processor.latency
    assert latency > 0, "the resamplers' delay must be reported"
    assert_close(stream(processor, audio, 44100, pattern), whole, f"{name} at 44.1 kHz, blocks {pattern}", TOLERANCE)
    assert processor.latency_at(44100, 2) == latency and processor.latency_at(48000, 2) == 0


@pytest.mark.parametrize("rate, model_latency", [(44100, 0), (44100, 5), (96000, 0), (22050, 3)])
def test_resampled_output_is_aligned_by_the_reported_latency(tmp_path, rate, model_latency):
    """An identity FIR (delayed by its declared latency) resampled there and back returns the input."""
    model = FIR(taps=16, latency=model_latency)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[model_latency] = 1.0
    path = save_model(tmp_path / "identity.safetensors", model, sample_rate=SR, training=TRAINING, metrics={}).path
    processor = NeuralProcessor.load(path, device="cpu")
    t = np.arange(rate) / rate
    tones = (0.4 * np.sin(2 * np.pi * 997 * t) + 0.3 * np.sin(2 * np.pi * 0.4 * min(rate, SR) * t)).astype(np.float32)
    out = processor(tones, rate)
    inner = slice(rate // 20, -rate // 20)  # away from the start-up and the cut-off tail
    assert_close(out[inner], tones[inner], f"identity round trip at {rate} Hz", 1e-4)
    streamed = stream(processor, tones, rate, "random", seed=2)
    assert_close(streamed, out, "identity round trip streamed", TOLERANCE)


def test_resampler_counts_depend_only_on_samples_received():
    resampler = StreamingResampler(44100, 48000, 1, delay_in=StreamingResampler.kernel_half_width(44100, 48000))
    rng = np.random.default_rng(0)
    received = produced = 0
    for _ in range(300):
        block = rng.standard_normal((1, int(rng.integers(1, 900)))).astype(np.float32)
        produced += resampler.process(block).shape[1]
        received += block.shape[1]
        assert produced == resampler.outputs_after(received) == -(-received * 160 // 147)


def test_restorer_runs_at_the_files_rate(models_dir):
    processor = load(models_dir, "restorer")
    audio = noise_signal(1, 10000, seed=8)[0]
    out = processor(audio, 44100)
    assert processor.latency == 0
    model, _ = load_model(models_dir / "restorer.safetensors")
    with torch.inference_mode():
        expected = model(torch.from_numpy(audio)[None])[0].numpy()
    assert_close(out, expected, "restorer at 44.1 kHz = the model applied directly", TOLERANCE)


# -- model files -----------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    model = make_lstm(hidden=12, seed=9)
    metrics = {"esr_holdout": 0.0123}
    path = tmp_path / "drive.safetensors"
    written = save_model(path, model, sample_rate=44100, training={**TRAINING, "steps": 10}, metrics=metrics)
    again = save_model(tmp_path / "again.safetensors", model, sample_rate=44100, training={**TRAINING, "steps": 10},
                       metrics=metrics)
    assert path.read_bytes() == again.path.read_bytes(), "saving is deterministic"
    loaded, info = load_model(path)
    assert isinstance(loaded, LSTM) and loaded.config() == {"hidden_size": 12, "skip": True}
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert info == written and info == read_model_info(path)
    assert (info.architecture, info.sample_rate, info.kind, info.latency, info.receptive_field) == (
        "lstm", 44100.0, "emulator", 0, 1)
    assert info.parameter_count == sum(p.numel() for p in model.parameters()) == 4 * 12 * (12 + 3) + 12 + 1
    assert info.training["steps"] == 10 and info.metrics == metrics and info.format_version == FORMAT_VERSION
    assert set(info.versions) == {"pedalchain", "torch", "numpy", "python"}
    x = torch.from_numpy(noise_signal(2, 5000, seed=10))
    with torch.inference_mode():
        assert torch.equal(loaded(x), model.eval()(x))
    text = describe_model_file(path)
    for expected in ("architecture     lstm", "parameters       733", "sample rate      44100 Hz", "receptive field",
                     "seeded random weights", "esr_holdout 0.0123", "torch 2."):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_save_refuses_incomplete_training_record(tmp_path):
    with pytest.raises(ValueError, match="duration_s"):
        save_model(tmp_path / "x.safetensors", make_fir(), sample_rate=SR, training={"data": "d", "seed": 1},
                   metrics={})


def _write_raw(path: Path, tensors: dict, meta: dict | None) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=None if meta is None else {"pedalchain": json.dumps(meta)})
    return path


def _fir_meta(**changes) -> dict:
    meta = {"format_version": 1, "architecture": "fir", "config": {"taps": 8, "latency": 0}, "sample_rate": SR,
            "latency": 0, "receptive_field": 8, "kind": "emulator", "training": TRAINING, "metrics": {}, "versions": {}}
    return {**meta, **changes}


def _corrupt(folder: Path, case: str) -> Path:
    path = folder / f"{case}.safetensors"
    good = {"weight": torch.ones(8)}
    if case == "truncated":
        whole = folder / "whole.safetensors"
        _write_raw(whole, good, _fir_meta())
        path.write_bytes(whole.read_bytes()[:-10])
    elif case == "truncated-header":
        _write_raw(path, good, _fir_meta())
        path.write_bytes(path.read_bytes()[:40])
    elif case == "garbage":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt this is not a model" * 3)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "newer-format":
        _write_raw(path, good, _fir_meta(format_version=FORMAT_VERSION + 1))
    elif case == "unknown-architecture":
        _write_raw(path, good, _fir_meta(architecture="transformer9000"))
    elif case == "missing-tensor":
        _write_raw(path, {"bias": torch.ones(1)}, _fir_meta())
    elif case == "wrong-shape":
        _write_raw(path, {"weight": torch.ones(9)}, _fir_meta())
    elif case == "missing-metadata":
        _write_raw(path, good, None)
    elif case == "bad-config":
        _write_raw(path, good, _fir_meta(config={"taps": -3}))
    else:
        raise AssertionError(case)
    return path


CORRUPT = {
    "truncated": "truncated",
    "truncated-header": "truncated",
    "garbage": "not a safetensors model file",
    "empty": "not a safetensors model file",
    "newer-format": "upgrade pedalchain",
    "unknown-architecture": "unknown model architecture 'transformer9000'.*fir, .*lstm",
    "missing-tensor": "missing tensors weight; unexpected tensors bias",
    "wrong-shape": r"tensor 'weight' has shape \[9\], expected \[8\]",
    "missing-metadata": "without pedalchain metadata",
    "bad-config": "does not fit architecture 'fir'",
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_model_files_give_one_line_naming_the_file(tmp_path, case):
    path = _corrupt(tmp_path, case)
    with pytest.raises(ModelFileError, match=CORRUPT[case]) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    with pytest.raises(ModelFileError):
        NeuralProcessor.load(path, device="cpu")


def test_corrupt_model_files_through_chain_apply(tmp_path):
    """`chain apply` on a chain whose model file is bad: one line, exit != 0, no traceback, no output."""
    song = tmp_path / "in.wav"
    sf.write(song, noise_signal(2, 4410).T, 44100, subtype="FLOAT")
    runs = {}
    for case in sorted(CORRUPT):
        folder = tmp_path / case
        folder.mkdir()
        _corrupt(folder, case)
        (folder / "x.yaml").write_text(f"steps:\n  - plugin: Gain\n    gain_db: -1\n  - model: {case}.safetensors\n")
        runs[case] = subprocess.Popen(
            [sys.executable, "-m", "pedalchain.cli", "apply", str(folder / "x.yaml"), str(song), "-o",
             str(folder / "out.wav")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    for case, run in runs.items():
        stdout, stderr = run.communicate(timeout=120)
        lines = stderr.strip().splitlines()
        assert run.returncode != 0, case
        assert len(lines) == 1 and "Traceback" not in stderr, f"{case}: {stderr}"
        assert f"{case}.safetensors" in lines[0] and "x.yaml:4" in lines[0], f"{case}: {lines[0]}"
        assert stdout == "" and not (tmp_path / case / "out.wav").exists(), case


def test_nam_file_as_a_model_step(tmp_path):
    """A .nam capture (the NAM loader's own fixture) works as a `model:` step: streamed = one-shot, resampled."""
    capture = Path(__file__).parent / "data" / "nam" / "lstm_standard_0_5.nam"
    if not capture.exists():
        pytest.skip(f"{capture} not found (made by tests/make_nam_fixtures.py)")
    (tmp_path / "amp.nam").write_bytes(capture.read_bytes())
    (tmp_path / "amp.yaml").write_text("steps:\n  - model: amp.nam\n    wet: 0.5\n")
    chain = load_chain(tmp_path / "amp.yaml")
    assert "amp.nam" in describe_model_file(tmp_path / "amp.nam")
    audio = noise_signal(2, 22050, seed=15)
    assert chain.latency_at(44100, 2) > 0
    assert_close(stream(chain, audio, 44100, "random"), chain_whole(chain, audio, 44100), "amp.nam at 44.1 kHz",
                 TOLERANCE)
    chain.save(tmp_path / "again.yaml")
    assert "model: amp.nam" in (tmp_path / "again.yaml").read_text()


# -- chains, YAML and files ------------------------------------------------------------------------------------------
FULL_CHAIN = (
    "  - plugin: HighpassFilter\n    cutoff_frequency_hz: 40 Hz\n"
    "  - model: models/lstm.safetensors\n    wet: 0.7\n"
    "  - plugin: Gain\n    gain_db: -3\n"
    "  - model: models/fir.safetensors\n    device: cpu\n"
    "  - model: lowpass-5k\n"
)
ONE_MODEL_CHAIN = (
    "  - plugin: HighpassFilter\n    cutoff_frequency_hz: 40 Hz\n"
    "  - model: models/lstm.safetensors\n    wet: 0.7\n"
    "  - plugin: Gain\n    gain_db: -3\n"
)


def _chain_yaml(folder: Path, models_dir: Path, steps: str = FULL_CHAIN) -> Path:
    (folder / "models").mkdir(exist_ok=True)
    for name in ("fir", "lstm"):
        (folder / "models" / f"{name}.safetensors").write_bytes((models_dir / f"{name}.safetensors").read_bytes())
    path = folder / "neural.yaml"
    path.write_text("name: neural\nsteps:\n" + steps)
    return path


def chain_whole(chain, audio: np.ndarray, rate: int) -> np.ndarray:
    """``chain(audio)`` with ``chain.latency`` zeros appended, cut back to the input length.

    Chain's one-shot path cuts every step's output at the input length, so a later step with latency
    (here: a resampled model, which looks ahead) misses the tail of an earlier one in its last
    ``latency`` samples; streaming keeps that tail.  Padding the one-shot input keeps it too.  (The
    same holds for stock plugins: Reverb followed by a nested chain holding Resample or MP3Compressor.)
    """
    padded = np.concatenate([audio, np.zeros((audio.shape[0], chain.latency_at(rate, audio.shape[0])), np.float32)], 1)
    return chain(padded, rate)[:, : audio.shape[1]]


CHAIN_CASES = [(FULL_CHAIN, 2, 48000), (FULL_CHAIN, 6, 48000), (ONE_MODEL_CHAIN, 2, 44100)]


@pytest.mark.parametrize("steps, channels, rate", CHAIN_CASES, ids=["3-models-2ch", "3-models-6ch", "resampled-2ch"])
def test_chain_with_model_steps_streams_like_whole_buffer(tmp_path, models_dir, steps, channels, rate):
    chain = load_chain(_chain_yaml(tmp_path, models_dir, steps))
    audio = noise_signal(channels, rate, seed=11)
    whole = chain_whole(chain, audio, rate)
    assert (chain.latency == 0) == (rate == SR)
    if rate == SR:
        assert_close(chain(audio, rate), whole, "no latency: padding changes nothing", 0.0)
    for pattern in (7, "random"):
        assert_close(stream(chain, audio, rate, pattern), whole, f"chain {channels} ch {rate} Hz {pattern}", TOLERANCE)


def test_two_resampled_models_in_a_row_differ_from_one_shot_only_at_the_start(tmp_path, models_dir):
    """Known limit: the second resampled step sees the first one's pre-roll when streamed, silence in one shot.

    A resampled step's first ``latency`` output samples are silenced, but the *next* resampled step's
    pre-roll carries the windowed-sinc pre-ringing of the first step's onset, which a third step then sees
    (one-shot processing runs each step on its own and never shows it).  The stream is the reference (the
    file runner streams); one-shot differs by ~1e-4 in the first ~latency samples only.
    """
    chain = load_chain(_chain_yaml(tmp_path, models_dir))
    audio = noise_signal(2, 44100, seed=11)
    streamed = stream(chain, audio, 44100, "random")
    whole = chain_whole(chain, audio, 44100)
    head = chain.latency
    assert_close(streamed[:, head:], whole[:, head:], "after the first `latency` samples", TOLERANCE)
    assert_close(streamed[:, :head], whole[:, :head], "the first `latency` samples", 1e-3)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_process_file_with_model_steps_is_block_size_independent(tmp_path, models_dir, rate):
    chain = load_chain(_chain_yaml(tmp_path, models_dir))
    audio = noise_signal(2, int(1.2 * rate), seed=12)
    song = tmp_path / "song.wav"
    sf.write(song, audio.T, rate, subtype="FLOAT")
    expected = chain(audio, rate) if rate == SR else stream(chain, audio, rate, 4096)
    for block in (777, 65536):
        out = tmp_path / f"out{block}.wav"
        summary = process_file(chain, song, out, RunOptions(block=block))
        rendered, read_rate = sf.read(out, dtype="float32", always_2d=True)
        assert read_rate == rate and summary.latency_samples == chain.latency_at(rate, 2)
        assert_close(rendered.T, expected, f"process_file block {block} at {rate} Hz", TOLERANCE)


def test_yaml_round_trip_keeps_model_paths_and_shipped_names(tmp_path, models_dir):
    chain = load_chain(_chain_yaml(tmp_path, models_dir))
    chain.append(NeuralProcessor.load("drive-12db", device="cpu"), id="drive")
    saved = tmp_path / "saved.yaml"
    chain.save(saved)
    text = saved.read_text()
    for line in ("model: models/lstm.safetensors", "wet: 0.7", "model: models/fir.safetensors", "device: cpu",
                 "model: lowpass-5k", "model: drive-12db", "id: drive"):
        assert line in text, f"{line!r} missing from:\n{text}"
    reloaded = load_chain(saved)
    audio = noise_signal(2, SR // 2, seed=13)
    assert_close(reloaded(audio, SR), chain(audio, SR), "reloaded chain", 0.0)


def test_model_step_errors_name_the_yaml_line(tmp_path, models_dir):
    (tmp_path / "fir.safetensors").write_bytes((models_dir / "fir.safetensors").read_bytes())
    cases = {
        "  - model: fir.safetensors\n    gain_db: 3\n": (ChainFileError, "takes no parameters except device", 3),
        "  - model: fir.safetensors\n    device: tpu\n": (ParameterError, "device: expects 'auto', 'cpu'", 4),
        "  - model: 42\n": (ChainFileError, "expects a model file", 3),
        "  - model: nowhere.safetensors\n": (ModelFileError, "nowhere.safetensors: no such model file", 3),
        "  - model: lowpas-5k\n": (ModelFileError, "did you mean 'lowpass-5k'", 3),
        "  - model: song.wav\n": (ModelFileError, "expected .safetensors or .nam", 3),
    }
    for body, (error, words, line) in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text("steps:\n  - plugin: Gain\n" + body)
        with pytest.raises(error, match=words) as caught:
            load_chain(path)
        assert str(caught.value).startswith(f"{path}:{line}: ") and "\n" not in str(caught.value), str(caught.value)


# -- shipped models ----------------------------------------------------------------------------------------------------
def test_shipped_models_load_by_bare_name_and_match_their_targets():
    assert {"lowpass-5k", "drive-12db"} <= set(shipped_models())
    audio = noise_signal(2, SR, seed=14)
    targets = {"lowpass-5k": (pedalboard.LowpassFilter(5000), 1e-9), "drive-12db": (pedalboard.Distortion(12), 1e-3)}
    for name, (target, max_esr) in targets.items():
        processor = NeuralProcessor.load(name, device="cpu")
        wanted = target(audio, SR)
        esr = float(np.sum((processor(audio, SR) - wanted) ** 2) / np.sum(wanted**2))
        assert esr < max_esr, f"{name}: ESR {esr:.3g} against {target}"
        info = processor.info
        assert info.metrics["esr_holdout"] < max_esr and info.training["seed"] == 0 and info.training["duration_s"] > 0
    listing = describe_shipped_models()
    assert "lowpass-5k" in listing and "drive-12db" in listing and "fir, 256 params, 48 kHz" in listing
    assert "training data" in describe_model_file("lowpass-5k")


# -- imports ----------------------------------------------------------------------------------------------------------
def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_torch_is_imported_only_when_a_model_step_is_built(tmp_path, models_dir):
    yaml_path = _chain_yaml(tmp_path, models_dir)
    code = (
        "import sys; import pedalchain, pedalchain.effects; from pedalchain.effects import NeuralProcessor; "
        "from pedalchain.chains.steps import step_kind; step_kind('model'); "
        "print('torch' in sys.modules); "
        f"chain = pedalchain.load_chain({str(yaml_path)!r}); print('torch' in sys.modules)"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_model_step_without_torch_says_how_to_install_it(tmp_path, models_dir):
    yaml_path = _chain_yaml(tmp_path, models_dir)
    song = tmp_path / "in.wav"
    sf.write(song, noise_signal(1, 4410).T, 44100)
    code = (  # a finder that refuses torch, as if it were not installed
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from pedalchain.cli import main\n"
        f"sys.exit(main(['apply', {str(yaml_path)!r}, {str(song)!r}]))\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"chain: error: {yaml_path}:5: "), lines
    assert lines[0].endswith("neural steps need torch: pip install 'pedalchain[neural]'"), lines
