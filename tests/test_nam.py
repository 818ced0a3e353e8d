"""Neural Amp Modeler support: parity with NAM's own outputs, streaming, export round trips, broken files.

The ``.nam`` fixtures in tests/data/nam/ and NAM's outputs for them (``reference.safetensors``) were made by the
real neural-amp-modeler package (0.10.0 for format 0.5.4, 0.13.0 for 0.7.0) with tests/make_nam_fixtures.py;
these tests need neither NAM nor a network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from pedalchain.errors import ModelFileError  # noqa: E402
from pedalchain.models.base import StreamingModel  # noqa: E402
from pedalchain.models.fir import FIR  # noqa: E402
from pedalchain.models.nam import NamInfo, export_nam, load_nam  # noqa: E402
from pedalchain.models.nam_lstm import NamLSTM  # noqa: E402
from pedalchain.models.wavenet import WaveNet  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "nam"
REFERENCE = safetensors_numpy.load_file(str(DATA / "reference.safetensors"))
REPORT = json.loads((DATA / "report.json").read_text())
FIXTURES = sorted(name for name in REFERENCE if name != "input")
PARITY_ATOL = 1e-5
STREAM_ATOL = 1e-5
CLASSES = {"wavenet": WaveNet, "nam_lstm": NamLSTM, "fir": FIR, "nam_linear": FIR}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: these small models gain nothing from more, and on a busy machine OpenMP's
    spinning threads slow them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(model: StreamingModel, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()


def _stream(model: StreamingModel, x: np.ndarray, sizes) -> np.ndarray:
    """Run ``x`` through ``forward_stream`` in blocks of the given sizes (the last one cut to fit)."""
    out, start = [], 0
    with torch.inference_mode():
        state = model.initial_state(1, torch.device("cpu"))
        for size in sizes:
            if start >= len(x):
                break
            block = torch.from_numpy(np.ascontiguousarray(x[start : start + size]))[None]
            y = model.forward_stream(block, state)
            assert y.shape == block.shape
            out.append(y[0].numpy())
            start += size
    assert start >= len(x)
    return np.concatenate(out)


def _nam_info(name: str) -> dict:
    return REPORT["new"].get(name) or REPORT["old"][name]


def test_fixture_list_is_not_empty():
    assert {"wavenet_a1_standard_0_5", "wavenet_extras_0_7", "lstm_standard_0_5", "linear_0_7"} <= set(FIXTURES)


# -- parity with NAM ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXTURES)
def test_output_matches_nam(name):
    model, info = load_nam(DATA / f"{name}.nam")
    y = _run(model, REFERENCE["input"])
    reference = REFERENCE[name]
    assert y.shape == reference.shape
    assert np.max(np.abs(y - reference)) <= PARITY_ATOL
    assert np.sqrt(np.mean(reference**2)) > 1e-3  # the reference is not silence
    assert isinstance(model, CLASSES[info.architecture])
    assert model.prewarm_samples == 0 and model.latency == 0


@pytest.mark.parametrize("name", FIXTURES)
def test_info_matches_what_nam_reports(name):
    model, info = load_nam(DATA / f"{name}.nam")
    nam = _nam_info(name)
    assert isinstance(info, NamInfo)
    assert info.file_format == "nam" and info.format_version == nam["version"]
    assert info.receptive_field == model.receptive_field == nam["receptive_field"]
    assert info.parameter_count == nam["weights"] - (1 if isinstance(model, WaveNet) else 0)  # head_scale
    text = info.describe()
    assert info.architecture in text and f"{info.parameter_count:,}" in text and "NAM network" in text


def test_a1_standard_shape():
    model, info = load_nam(DATA / "wavenet_a1_standard_0_5.nam")
    assert info.format_version == "0.5.4" and info.receptive_field == 4093 and info.parameter_count == 13_801
    assert info.sample_rate == 48_000 and info.nam_architecture == "WaveNet"
    assert sum(p.numel() for p in model.parameters()) == 13_801


def test_linear_keeps_its_sample_rate_and_taps():
    model, info = load_nam(DATA / "linear_0_7.nam")
    assert isinstance(model, FIR) and model.taps == 32 and info.sample_rate == 44_100


# -- streaming ------------------------------------------------------------------------------------------------------
STREAMED = ["wavenet_a1_standard_0_5", "wavenet_extras_0_7", "wavenet_gated_head_0_5", "lstm_2layer_0_7"]


def _random_sizes(seed: int):
    rng = np.random.default_rng(seed)
    while True:
        yield int(np.exp(rng.uniform(0, np.log(8193))))


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize("pattern", [64, 512, 4096, "random"])
def test_any_block_split_gives_the_whole_buffer_output(name, pattern):
    model, _ = load_nam(DATA / f"{name}.nam")
    x = REFERENCE["input"][:20_000]
    whole = _run(model, x)
    sizes = _random_sizes(1) if pattern == "random" else iter(lambda: pattern, None)
    assert np.max(np.abs(_stream(model, x, sizes) - whole)) <= STREAM_ATOL


@pytest.mark.parametrize("name", STREAMED)
def test_one_sample_blocks(name):
    model, _ = load_nam(DATA / f"{name}.nam")
    x = REFERENCE["input"][5_000:5_400]  # starts loud: history before it is silence
    assert np.max(np.abs(_stream(model, x, iter(lambda: 1, None)) - _run(model, x))) <= STREAM_ATOL


def test_streams_in_a_batch_are_independent():
    model, _ = load_nam(DATA / "wavenet_extras_0_7.nam")
    x = REFERENCE["input"][:3_000]
    both = np.stack([x, x[::-1].copy()])
    with torch.inference_mode():
        state = model.initial_state(2, torch.device("cpu"))
        y = torch.cat([model.forward_stream(torch.from_numpy(both[:, i : i + 700]), state)
                       for i in range(0, 3_000, 700)], dim=1).numpy()
    assert np.max(np.abs(y[0] - _run(model, x))) <= STREAM_ATOL
    assert np.max(np.abs(y[1] - _run(model, x[::-1].copy()))) <= STREAM_ATOL


def test_wavenet_starts_from_silence():
    """Output for [silence, x] after the silence equals output for x: NAM's zero input history."""
    model, _ = load_nam(DATA / "wavenet_nano_0_5.nam")
    x = REFERENCE["input"][:6_000]
    padded = np.concatenate([np.zeros(5_000, np.float32), x])
    assert np.max(np.abs(_run(model, padded)[5_000:] - _run(model, x))) <= 1e-6


# -- export -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXTURES)
def test_export_round_trip_is_exact(name, tmp_path):
    model, info = load_nam(DATA / f"{name}.nam")
    path = export_nam(model, tmp_path / "again.nam", sample_rate=info.sample_rate, metadata={"name": name})
    again, again_info = load_nam(path)
    x = REFERENCE["input"][:8_000]
    assert np.array_equal(_run(again, x), _run(model, x))
    assert again_info.nam_metadata["name"] == name and again_info.sample_rate == info.sample_rate


@pytest.mark.parametrize("name", ["wavenet_a1_standard_0_5", "wavenet_nano_0_5", "wavenet_gated_head_0_5",
                                  "lstm_standard_0_5", "wavenet_extras_0_7"])
def test_export_writes_nams_own_layout(name, tmp_path):
    """Re-exporting a NAM file gives back its config and weights (0.5 files stay 0.5.4, 0.7-only ones 0.7.0)."""
    original = json.loads((DATA / f"{name}.nam").read_text())
    model, _ = load_nam(DATA / f"{name}.nam")
    written = json.loads(export_nam(model, tmp_path / "x.nam").read_text())
    assert written["version"] == ("0.7.0" if name.endswith("0_7") else "0.5.4")
    assert written["architecture"] == original["architecture"]
    assert written["weights"] == original["weights"]
    if name.endswith("0_7"):  # NAM 0.13 writes a few more keys; every key we write must agree with it
        for ours, theirs in zip(written["config"]["layers"], original["config"]["layers"], strict=True):
            assert {k: v for k, v in theirs.items() if k in ours} == ours
        assert written["config"]["head"] == original["config"]["head"]
    else:
        assert written["config"] == original["config"]


def test_export_a_pedalchain_fir_as_nam_linear(tmp_path):
    fir = FIR(taps=16)
    with torch.no_grad():
        fir.weight.copy_(torch.linspace(1.0, -0.5, 16))
    path = export_nam(fir, tmp_path / "fir.nam", sample_rate=44_100)
    data = json.loads(path.read_text())
    assert data["architecture"] == "Linear" and data["config"] == {"receptive_field": 16, "bias": False}
    again, info = load_nam(path)
    x = REFERENCE["input"][:2_000]
    assert np.array_equal(_run(again, x), _run(fir, x)) and info.sample_rate == 44_100


def test_export_a_pedalchain_lstm_without_skip(tmp_path):
    from pedalchain.models.lstm import LSTM

    torch.manual_seed(0)
    lstm = LSTM(hidden_size=6, skip=False)
    again, _ = load_nam(export_nam(lstm, tmp_path / "lstm.nam"))
    x = REFERENCE["input"][:4_000]
    assert isinstance(again, NamLSTM)
    assert np.max(np.abs(_run(again, x) - _run(lstm, x))) <= 1e-6


def test_export_refuses_what_nam_cannot_hold(tmp_path):
    from pedalchain.models.lstm import LSTM

    with pytest.raises(ModelFileError, match="cannot export lstm with skip=True to .nam"):
        export_nam(LSTM(hidden_size=4, skip=True), tmp_path / "a.nam")
    with pytest.raises(ModelFileError, match="cannot export fir with latency 3 to .nam"):
        export_nam(FIR(taps=8, latency=3), tmp_path / "b.nam")

    class Gain(StreamingModel):
        architecture = "gain"
        receptive_field = 1

        def forward(self, x):
            return 2 * x

        def initial_state(self, batch, device):
            return {}

        def forward_stream(self, x, state):
            return 2 * x

        def config(self):
            return {}

    with pytest.raises(ModelFileError, match="cannot export gain to .nam: NAM has no equivalent"):
        export_nam(Gain(), tmp_path / "c.nam")
    assert not list(tmp_path.iterdir())


def test_nam_models_save_as_pedalchain_model_files(tmp_path):
    from pedalchain.models.model_file import load_model, save_model

    for name in ("wavenet_extras_0_7", "lstm_2layer_0_7"):
        model, info = load_nam(DATA / f"{name}.nam")
        path = tmp_path / f"{name}.safetensors"
        save_model(path, model, sample_rate=info.sample_rate, training={"data": name, "seed": None,
                                                                         "duration_s": None}, metrics={})
        again, _ = load_model(path)
        x = REFERENCE["input"][:3_000]
        assert np.array_equal(_run(again, x), _run(model, x))


def test_open_model_reads_nam_files():
    from pedalchain.models.model_file import open_model

    model, info = open_model(DATA / "wavenet_nano_0_5.nam")
    assert isinstance(model, WaveNet) and info.file_format == "nam"


# -- broken files -----------------------------------------------------------------------------------------------------
def _broken(tmp_path: Path, change) -> Path:
    data = json.loads((DATA / "wavenet_nano_0_5.nam").read_text())
    change(data)
    path = tmp_path / "broken.nam"
    path.write_text(json.dumps(data))
    return path


def _raises(path: Path, pattern: str) -> ModelFileError:
    with pytest.raises(ModelFileError, match=pattern) as caught:
        load_nam(path)
    assert str(path) in str(caught.value)
    return caught.value


def test_truncated_json(tmp_path):
    text = (DATA / "wavenet_nano_0_5.nam").read_text()
    path = tmp_path / "cut.nam"
    path.write_text(text[: len(text) // 2])
    _raises(path, "not a valid .nam model file: JSON error .*truncated")


def test_garbage(tmp_path):
    path = tmp_path / "garbage.nam"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00garbage")
    _raises(path, "not a .nam model file|not a valid .nam model file")
    path.write_text("[1, 2, 3]")
    _raises(path, "its JSON is not an object")


def test_missing_file(tmp_path):
    _raises(tmp_path / "nothing.nam", "no such model file")


@pytest.mark.parametrize("version", ["0.8.0", "1.0.0", "0.10.1"])
def test_newer_version(tmp_path, version):
    _raises(_broken(tmp_path, lambda d: d.update(version=version)), re.escape(version) + ".*newer than supported")


@pytest.mark.parametrize("version", ["0.4.0", "banana", 5])
def test_older_or_malformed_version(tmp_path, version):
    _raises(_broken(tmp_path, lambda d: d.update(version=version)), "older than supported|not a version number")


def test_unknown_architecture(tmp_path):
    _raises(_broken(tmp_path, lambda d: d.update(architecture="ConvNet")), "'ConvNet' is not supported")


def test_wrong_weight_count(tmp_path):
    error = _raises(_broken(tmp_path, lambda d: d["weights"].pop()), "expects 842 weights, the file has 841")
    assert "WaveNet" in str(error)


def test_wrong_weight_count_lstm_and_linear(tmp_path):
    for name, expected in (("lstm_standard_0_5", 2569), ("linear_0_7", 32)):
        data = json.loads((DATA / f"{name}.nam").read_text())
        data["weights"].append(0.5)
        path = tmp_path / f"{name}.nam"
        path.write_text(json.dumps(data))
        _raises(path, f"expects {expected} weights, the file has {expected + 1}")


def test_bad_weights_and_config(tmp_path):
    _raises(_broken(tmp_path, lambda d: d.update(weights="1,2,3")), "not a list of numbers")
    _raises(_broken(tmp_path, lambda d: d.pop("config")), "no 'config' entry")
    _raises(_broken(tmp_path, lambda d: d["config"]["layers"][0].pop("dilations")), "lacks 'dilations'")
    _raises(_broken(tmp_path, lambda d: d["config"]["layers"][0].update(activation="Swoosh")),
            "unknown activation 'Swoosh'")
    _raises(_broken(tmp_path, lambda d: d["config"]["layers"][1].update(input_size=3)), "input_size 3")


def test_unsupported_wavenet_features_are_named(tmp_path):
    data = json.loads((DATA / "wavenet_extras_0_7.nam").read_text())
    data["config"]["layers"][0]["conv_post_film"]["active"] = True
    path = tmp_path / "film.nam"
    path.write_text(json.dumps(data))
    _raises(path, "FiLM")


def test_file_without_sample_rate_is_48k(tmp_path):
    _, info = load_nam(_broken(tmp_path, lambda d: d.pop("sample_rate")))
    assert info.sample_rate == 48_000 and not info.sample_rate_stated
    assert "48 kHz assumed" in info.describe()


def test_wavenet_trains():
    """With autograd on, the same output (no in-place op breaks the graph) and finite gradients."""
    model, _ = load_nam(DATA / "wavenet_extras_0_7.nam")
    x = torch.from_numpy(REFERENCE["input"][:2_000])[None]
    y = model(x)
    y.square().mean().backward()
    assert torch.allclose(y.detach(), torch.from_numpy(_run(model, x[0].numpy()))[None], atol=1e-6)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_neural_processor_streams_a_nam_file_in_stereo():
    from helpers import stream
    from pedalchain.effects.neural import NeuralProcessor

    processor = NeuralProcessor.load(DATA / "wavenet_extras_0_7.nam", device="cpu")
    model, _ = load_nam(DATA / "wavenet_extras_0_7.nam")
    audio = np.stack([REFERENCE["input"][:9_000], REFERENCE["input"][9_000:18_000]])
    expected = np.stack([_run(model, channel) for channel in audio])
    assert np.max(np.abs(processor.process(audio, 48_000) - expected)) <= STREAM_ATOL
    assert np.max(np.abs(stream(processor, audio, 48_000, "random") - expected)) <= STREAM_ATOL


@pytest.mark.parametrize("size, weights", [("standard", 13_801), ("nano", 841)])
def test_nam_presets_have_nams_shapes(size, weights, tmp_path):
    model = WaveNet.nam_preset(size)
    assert model.receptive_field == 4_093 and sum(p.numel() for p in model.parameters()) == weights
    written = json.loads(export_nam(model, tmp_path / "a1.nam").read_text())
    original = json.loads((DATA / f"wavenet_{'a1_standard' if size == 'standard' else 'nano'}_0_5.nam").read_text())
    assert written["version"] == "0.5.4" and written["config"] == original["config"]


def test_chain_export_nam_writes_the_models_rate_and_record(tmp_path: Path, capsys) -> None:
    from pedalchain.cli import main
    from pedalchain.models.model_file import load_model, shipped_models

    out = tmp_path / "lowpass.nam"
    assert main(["export-nam", "lowpass-5k", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    original, info = load_model(shipped_models()["lowpass-5k"])
    exported, nam_info = load_nam(out)
    assert nam_info.sample_rate == info.sample_rate and nam_info.sample_rate_stated
    assert nam_info.training["data"] == info.training["data"] and nam_info.metrics["esr_holdout"] > 0
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (1, 4800)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(exported(x), original(x), atol=1e-6)
    assert main(["export-nam", "lowpass-5k", "-o", str(out)]) == 2  # exists: not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    refused = tmp_path / "drive.nam"
    assert main(["export-nam", "drive-12db", "-o", str(refused)]) == 2  # the trainer's LSTM adds its input back
    assert "no input-to-output skip" in capsys.readouterr().err and not refused.exists()
    assert list(tmp_path.iterdir()) == [out]
