"""The built-in plugin table and its validation, against the real pedalboard (no mocks)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard
import pytest
from pedalboard.io import AudioFile
from pedalchain.effects.stock import (
    BUILTIN_PLUGINS,
    ParamSpec,
    build_builtin,
    builtin_param_values,
    check_sample_rate,
    describe_builtins,
    spec_for,
    validate_params,
)
from pedalchain.effects.units import parse_quantity
from pedalchain.errors import ChainFileError, ParameterError

# Containers, abstract bases and hosts of external plugins: not built-in effects.
NOT_BUILTIN = {"Pedalboard", "Chain", "Mix", "ExternalPlugin", "VST3Plugin", "AudioUnitPlugin", "Plugin"}
NOT_BUILTIN |= {"PluginContainer", "IIRFilter"}


@pytest.fixture(scope="module")
def ir_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short mono impulse response at 22.05 kHz."""
    path = tmp_path_factory.mktemp("ir") / "cab.wav"
    ir = np.zeros((1, 64), np.float32)
    ir[0, 0], ir[0, 20] = 1.0, 0.25
    with AudioFile(str(path), "w", 22050, 1) as f:
        f.write(ir)
    return path


def required_values(name: str, ir_file: Path) -> dict[str, Any]:
    return {"impulse_response_filename": str(ir_file)} if name == "Convolution" else {}


def same(a: Any, b: Any) -> bool:
    """Equal, comparing floats at pedalboard's float32 precision."""
    if isinstance(a, float) or isinstance(b, float):
        return np.float32(a) == np.float32(b)
    return a == b


def native_signature(cls: type) -> dict[str, str | None]:
    """Parameter name -> default text (None when required) from a pybind11 ``__init__`` docstring."""
    doc = cls.__init__.__doc__.strip().splitlines()[0]
    inner = doc[doc.index("(") + 1 : doc.rindex(")")]
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch in "[<(":
            depth += 1
        elif ch in "]>)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    result: dict[str, str | None] = {}
    for part in parts[1:]:  # parts[0] is self
        name = part.split(":", 1)[0].strip()
        result[name] = part.split(" = ", 1)[1].strip() if " = " in part else None
    return result


def parse_native_default(text: str | None) -> Any:
    if text is None or text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("<"):  # <Mode.LPF12: 0>
        return text[1:].split(":")[0].split(".")[-1]
    return float(text)


# --- coverage of pedalboard -----------------------------------------------------------------------


def test_table_covers_every_concrete_builtin() -> None:
    exported = {
        obj.__name__
        for name, obj in vars(pedalboard).items()
        if not name.startswith("_") and isinstance(obj, type) and issubclass(obj, pedalboard.Plugin)
    }
    expected = exported - NOT_BUILTIN
    assert set(BUILTIN_PLUGINS) == expected, "pedalboard's built-ins changed: update effects/stock.py"
    for name, spec in BUILTIN_PLUGINS.items():
        assert spec.name == name and getattr(pedalboard, name) is spec.cls


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_params_and_defaults_match_native_signature(name: str) -> None:
    spec = BUILTIN_PLUGINS[name]
    signature = native_signature(spec.cls)
    assert list(spec.params) == list(signature)
    for param, text in signature.items():
        p = spec.params[param]
        assert p.kind in ("float", "bool", "enum", "path", "int")
        assert p.default == parse_native_default(text), param
        assert p.required == (text is None)
        if p.kind == "enum":
            assert p.default in p.choices and set(p.choices) == set(p.enum_type.__members__)


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_builds_with_defaults_and_reports_them(name: str, ir_file: Path) -> None:
    spec = BUILTIN_PLUGINS[name]
    plugin = build_builtin(name, required_values(name, ir_file), sample_rate=44100)
    assert type(plugin) is spec.cls
    values = builtin_param_values(plugin)
    for p in spec.params.values():
        if p.required or p.default is None:
            continue
        assert same(values[p.name], p.default), p.name
        native = getattr(plugin, p.name)
        assert same(native.name if p.kind == "enum" else native, p.default), p.name
    # Defaults lie inside the table's own ranges.
    defaults = {p.name: p.default for p in spec.params.values() if p.default is not None}
    validate_params(name, {**defaults, **required_values(name, ir_file)}, sample_rate=44100)


def test_plugin_flags() -> None:
    not_streamable = {n for n, s in BUILTIN_PLUGINS.items() if not s.streamable}
    assert not_streamable == {"PitchShift", "GSMFullRateCompressor"}
    assert {n for n, s in BUILTIN_PLUGINS.items() if s.fixed_blocks} == {"MP3Compressor", "Resample"}
    assert all(s.doc for s in BUILTIN_PLUGINS.values())
    assert all(p.doc for s in BUILTIN_PLUGINS.values() for p in s.params.values())


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "param", "value"),
    [
        # pedalboard rejects these too
        ("Bitcrush", "bit_depth", 33),
        ("Delay", "delay_seconds", -1),
        ("PitchShift", "semitones", 73),
        ("Reverb", "room_size", 1.5),
        ("Resample", "target_sample_rate", 0),
        ("Compressor", "ratio", 0.5),
        ("PeakFilter", "q", 0),
        ("BrickwallLimiter", "lookahead_ms", 0),
        # pedalboard silently accepts these
        ("Compressor", "attack_ms", -1),
        ("Limiter", "release_ms", 0),
        ("NoiseGate", "ratio", 0.5),
        ("Chorus", "depth", 2),
        ("Chorus", "feedback", 1.5),
        ("Phaser", "mix", 2),
        ("Phaser", "feedback", 2),
        ("Convolution", "mix", 2),
        ("LowpassFilter", "cutoff_frequency_hz", -5),
        ("MP3Compressor", "vbr_quality", 10),
    ],
)
def test_out_of_range(plugin: str, param: str, value: float, ir_file: Path) -> None:
    with pytest.raises(ParameterError, match="out of range") as info:
        validate_params(plugin, {param: value, **required_values(plugin, ir_file)})
    assert info.value.where == f"{plugin}.{param}"
    assert f"'{param}'" in info.value.message


def test_out_of_range_message_has_units() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params("Delay", {"delay_seconds": "31 s"})
    assert str(info.value) == (
        "Delay.delay_seconds: Value received for parameter 'delay_seconds' (31.0 s) "
        "is out of range [0 s, 30 s]"
    )


def test_nyquist_cap() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params("LowpassFilter", {"cutoff_frequency_hz": "20 kHz"}, sample_rate=8000)
    assert "(20000.0 Hz)" in info.value.message
    assert "[1 Hz, 4000 Hz) (below the Nyquist frequency of 8000 Hz audio)" in info.value.message
    assert validate_params("LowpassFilter", {"cutoff_frequency_hz": "20 kHz"}, sample_rate=44100) == {
        "cutoff_frequency_hz": 20000.0
    }
    # Exactly Nyquist is rejected; without a sample rate only the static ceiling applies.
    with pytest.raises(ParameterError, match="Nyquist"):
        validate_params("PeakFilter", {"cutoff_frequency_hz": 4000}, sample_rate=8000)
    assert validate_params("LowpassFilter", {"cutoff_frequency_hz": 20000}) == {
        "cutoff_frequency_hz": 20000.0
    }


def test_check_sample_rate_on_live_plugins() -> None:
    lowpass = build_builtin("LowpassFilter", {"cutoff_frequency_hz": 20000}, sample_rate=44100)
    check_sample_rate(lowpass, 44100)
    with pytest.raises(ParameterError, match="Nyquist frequency of 8000 Hz audio") as info:
        check_sample_rate(lowpass, 8000)
    assert info.value.where == "LowpassFilter.cutoff_frequency_hz"
    with pytest.raises(ParameterError, match="Nyquist"):  # inside a container
        check_sample_rate(pedalboard.Pedalboard([pedalboard.Gain(), lowpass]), 8000)
    # Defaults are checked too when building at a known sample rate (HighShelfFilter defaults to 440 Hz).
    with pytest.raises(ParameterError, match="cutoff_frequency_hz"):
        build_builtin("HighShelfFilter", {}, sample_rate=800)
    mp3 = build_builtin("MP3Compressor", {})
    check_sample_rate(mp3, 48000)
    with pytest.raises(ParameterError, match="MP3Compressor cannot process audio at 96000 Hz"):
        check_sample_rate(mp3, 96000)
    with pytest.raises(ParameterError, match="96000 Hz"):
        validate_params("MP3Compressor", {}, sample_rate=96000)


def test_unknown_parameter_suggests_closest() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params("LowpassFilter", {"cutoff_hz": 1000})
    assert "Did you mean 'cutoff_frequency_hz'?" in info.value.message
    assert "Valid parameters: cutoff_frequency_hz" in info.value.message
    assert info.value.where == "LowpassFilter.cutoff_hz"
    with pytest.raises(ParameterError, match="Invert takes no parameters"):
        validate_params("Invert", {"mix": 1})


def test_unknown_plugin_suggests_closest() -> None:
    with pytest.raises(ChainFileError, match="Did you mean 'LowpassFilter'"):
        spec_for("LowPassFilter")
    with pytest.raises(ChainFileError, match="Built-in plugins: Bitcrush"):
        validate_params("Fuzz", {})
    assert spec_for("Reverb") is BUILTIN_PLUGINS["Reverb"]


@pytest.mark.parametrize(
    ("plugin", "values", "match"),
    [
        ("Gain", {"gain_db": True}, "boolean, not a number"),
        ("Gain", {"gain_db": "loud"}, "not a number"),
        ("Gain", {"gain_db": [1, 2]}, "list, not a number"),
        ("Gain", {"gain_db": None}, "not a number"),
        ("Gain", {"gain_db": float("nan")}, "not a finite number"),
        ("BrickwallLimiter", {"true_peak": "yes"}, "must be true or false"),
        ("BrickwallLimiter", {"true_peak": 1}, "must be true or false"),
        ("LadderFilter", {"mode": 3}, "must be one of the names LPF12, HPF12"),
        ("Convolution", {"impulse_response_filename": 5}, "must be a file path"),
    ],
)
def test_wrong_types(plugin: str, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        validate_params(plugin, values)


def test_parameters_must_be_a_mapping() -> None:
    with pytest.raises(ParameterError, match="must be a mapping"):
        validate_params("Gain", [("gain_db", 1)])  # type: ignore[arg-type]
    assert validate_params("Gain", None) == {}


def test_enums_by_member_name() -> None:
    assert validate_params("LadderFilter", {"mode": "HPF24"}) == {"mode": pedalboard.LadderFilter.Mode.HPF24}
    assert validate_params("LadderFilter", {"mode": "bpf12"})["mode"] is pedalboard.LadderFilter.Mode.BPF12
    q = pedalboard.Resample.Quality
    assert validate_params("Resample", {"quality": "Linear"}) == {"quality": q.Linear}
    assert validate_params("GSMFullRateCompressor", {"quality": q.CatmullRom}) == {"quality": q.CatmullRom}
    with pytest.raises(ParameterError) as info:
        validate_params("Resample", {"quality": "WindowedSinc12"})
    assert "Options: ZeroOrderHold, Linear, CatmullRom" in info.value.message
    assert info.value.where == "Resample.quality"
    plugin = build_builtin("LadderFilter", {"mode": "HPF24", "cutoff_hz": "2 kHz"})
    assert plugin.mode == pedalboard.LadderFilter.Mode.HPF24 and plugin.cutoff_hz == 2000.0


def test_convolution_paths(ir_file: Path, tmp_path: Path) -> None:
    relative = {"impulse_response_filename": ir_file.name}
    kwargs = validate_params("Convolution", relative, base_dir=ir_file.parent)
    assert kwargs == {"impulse_response_filename": str(ir_file)}
    plugin = build_builtin("Convolution", {**relative, "mix": 0.5}, None, ir_file.parent)
    assert builtin_param_values(plugin) == {"impulse_response_filename": str(ir_file), "mix": 0.5}
    with pytest.raises(ParameterError, match="not found") as info:
        validate_params("Convolution", {"impulse_response_filename": "missing.wav"}, base_dir=tmp_path)
    assert str(tmp_path / "missing.wav") in info.value.message
    with pytest.raises(ParameterError, match="requires parameter 'impulse_response_filename'"):
        validate_params("Convolution", {"mix": 0.5})
    # sample_rate is optional (and may be written explicitly as null).
    values = {"impulse_response_filename": str(ir_file), "sample_rate": "22.05 kHz"}
    assert validate_params("Convolution", values)["sample_rate"] == 22050.0
    assert "sample_rate" not in validate_params("Convolution", {**values, "sample_rate": None})


def test_builtin_param_values_rejects_non_builtins() -> None:
    with pytest.raises(ParameterError, match="not a pedalboard built-in"):
        builtin_param_values(pedalboard.Pedalboard([]))


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("440 Hz", "Hz", 440.0),
        ("1.5 kHz", "Hz", 1500.0),
        ("2KHZ", "Hz", 2000.0),
        (440, "Hz", 440.0),
        ("-18 dB", "dB", -18.0),
        ("-1 dBFS", "dB", -1.0),
        ("+3db", "dB", 3.0),
        ("5 ms", "ms", 5.0),
        ("0.5 s", "ms", 500.0),
        ("250ms", "s", 0.25),
        ("1.5 s", "s", 1.5),
        ("-7 st", "semitones", -7.0),
        ("50 cents", "semitones", 0.5),
        ("12", "semitones", 12.0),
        ("0.25", None, 0.25),
        ("1e3", None, 1000.0),
        (np.float32(0.5), None, 0.5),
        (3, None, 3.0),
    ],
)
def test_parse_quantity(value: Any, unit: str | None, expected: float) -> None:
    result = parse_quantity(value, unit, "p")
    assert isinstance(result, float) and math.isclose(result, expected)


@pytest.mark.parametrize(
    ("value", "unit", "match"),
    [
        ("-18 dB", "Hz", "has unit 'dB', which cannot be converted to Hz; expected .* Hz, kHz"),
        ("5 Hz", "ms", "cannot be converted to ms"),
        ("3 dB", None, "cannot be converted to a unitless value"),
        ("2 furlongs", "s", "has unit 'furlongs'"),
        (True, "Hz", "boolean"),
        (False, None, "boolean"),
        ("fast", "ms", "not a number"),
        ("inf", "dB", "not a number"),
        (float("inf"), "dB", "not a finite number"),
        ({"a": 1}, None, "dict, not a number"),
    ],
)
def test_parse_quantity_errors(value: Any, unit: str | None, match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        parse_quantity(value, unit, "cutoff")
    assert "'cutoff'" in info.value.message and info.value.where == "cutoff"


def test_units_in_validate_params() -> None:
    assert validate_params("Delay", {"delay_seconds": "250 ms"}) == {"delay_seconds": 0.25}
    assert validate_params("Compressor", {"attack_ms": "0.01 s", "threshold_db": "-18 dB"}) == {
        "attack_ms": 10.0,
        "threshold_db": -18.0,
    }
    assert validate_params("PitchShift", {"semitones": "-12 st"}) == {"semitones": -12.0}
    with pytest.raises(ParameterError, match="cannot be converted to Hz") as info:
        validate_params("HighpassFilter", {"cutoff_frequency_hz": "-18 dB"})
    assert info.value.where == "HighpassFilter.cutoff_frequency_hz"


# --- round trip and listing -----------------------------------------------------------------------


def sample_value(p: ParamSpec, ir_file: Path) -> Any:
    """A valid, non-default value for ``p`` at 44.1 kHz."""
    if p.kind == "path":
        return str(ir_file)
    if p.kind == "bool":
        return not p.default
    if p.kind == "enum":
        return next(c for c in reversed(p.choices) if c != p.default)
    high = min(p.maximum, 22050.0) if p.below_nyquist else p.maximum
    return p.minimum + (high - p.minimum) * 0.37


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_round_trip(name: str, ir_file: Path) -> None:
    spec = BUILTIN_PLUGINS[name]
    values = {p.name: sample_value(p, ir_file) for p in spec.params.values() if p.name != "sample_rate"}
    first = validate_params(name, values, sample_rate=44100)
    plugin = build_builtin(name, values, sample_rate=44100)
    saved = builtin_param_values(plugin)
    assert set(saved) == set(values)
    second = validate_params(name, saved, sample_rate=44100)
    assert set(first) == set(second)
    for key in first:
        assert same(first[key], second[key]), key
    assert validate_params(name, builtin_param_values(build_builtin(name, second))) == second


def test_readback_is_clean_for_yaml() -> None:
    saved = builtin_param_values(build_builtin("Reverb", {"wet_level": 0.33, "room_size": 0.1}))
    assert saved["wet_level"] == 0.33 and saved["room_size"] == 0.1
    assert builtin_param_values(pedalboard.LadderFilter()) == {
        "mode": "LPF12",
        "cutoff_hz": 200.0,
        "resonance": 0.0,
        "drive": 1.0,
    }


def test_describe_builtins() -> None:
    text = describe_builtins()
    for spec in BUILTIN_PLUGINS.values():
        assert f"{spec.name}: {spec.doc}" in text
        for p in spec.params:
            assert f"    {p} (" in text
    assert "cutoff_frequency_hz (float, Hz): [1 Hz, 96000 Hz] and below Nyquist" in text
    assert "delay_seconds (float, s): [0 s, 30 s]; default 0.5 s" in text
    assert "mode (enum): one of LPF12, HPF12, BPF12, LPF24, HPF24, BPF24; default LPF12" in text
