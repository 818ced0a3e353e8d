"""Parameter table and validation for pedalboard's built-in plugins (pedalboard 0.9.26).

Every concrete built-in plugin has a :class:`PluginSpec` in :data:`BUILTIN_PLUGINS` listing its constructor
parameters with unit, range and default.  :func:`validate_params` checks values from a chain file before
pedalboard sees them, because pedalboard checks only some ranges and silently accepts nonsense for others
(a negative Compressor attack, a Phaser mix of 2, a 20 kHz low-pass at 8 kHz which outputs NaN, ...).

Ranges are pedalboard's own where it has one (e.g. Delay 0..30 s, PitchShift +-72 semitones), JUCE's
documented range where pedalboard forwards to a JUCE class that only asserts in debug builds (e.g. Chorus
depth 0..1, Phaser feedback -1..1), and otherwise a musically sensible limit chosen here; each parameter's
``doc`` says which ("pedalchain limit" marks limits that pedalboard itself does not enforce).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard

from ..errors import ChainFileError, ParameterError
from .units import format_quantity, parse_quantity

__all__ = [
    "BUILTIN_PLUGINS",
    "MP3_SAMPLE_RATES",
    "ParamSpec",
    "PluginSpec",
    "build_builtin",
    "builtin_param_values",
    "check_sample_rate",
    "describe_builtins",
    "spec_for",
    "validate_params",
]

#: Sample rates (Hz) at which MP3Compressor (LAME) can process audio; others fail at process time.
MP3_SAMPLE_RATES: frozenset[int] = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})

_KINDS = ("float", "bool", "enum", "path", "int")


@dataclass(frozen=True)
class ParamSpec:
    """One constructor parameter of a built-in plugin.

    ``minimum``/``maximum`` are inclusive unless ``min_exclusive``/``max_exclusive`` is set.  With
    ``below_nyquist`` the maximum is further capped, exclusively, at ``sample_rate / 2`` whenever a sample
    rate is known.  Enum defaults are member *names*; ``required`` parameters have no default.
    """

    name: str
    kind: str
    default: Any
    unit: str | None
    minimum: float | None
    maximum: float | None
    below_nyquist: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""
    min_exclusive: bool = False
    max_exclusive: bool = False
    required: bool = False
    enum_type: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"ParamSpec {self.name!r}: kind must be one of {_KINDS}, not {self.kind!r}")
        if self.kind == "enum" and (self.enum_type is None or self.default not in self.choices):
            raise ValueError(f"ParamSpec {self.name!r}: enum needs enum_type and a default among its choices")

    def range_text(self, sample_rate: float | None = None) -> str:
        """The accepted range with units, e.g.
        ``"[1 Hz, 22050 Hz) (below the Nyquist frequency of 44100 Hz audio)"``."""
        if self.kind == "enum":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "path":
            return "an existing file"
        low = "-inf" if self.minimum is None else format_quantity(self.minimum, self.unit)
        high_value, high_excl = self.maximum, self.max_exclusive
        nyquist_note = ""
        if self.below_nyquist:
            if sample_rate is not None:
                nyquist = sample_rate / 2
                if high_value is None or nyquist <= high_value:
                    high_value, high_excl = nyquist, True
                    nyquist_note = f" (below the Nyquist frequency of {format_quantity(sample_rate, 'Hz')} audio)"
            else:
                nyquist_note = " and below Nyquist (sample rate / 2)"
        high = "inf" if high_value is None else format_quantity(high_value, self.unit)
        left = "(" if self.min_exclusive or self.minimum is None else "["
        right = ")" if high_excl or high_value is None else "]"
        return f"{left}{low}, {high}{right}{nyquist_note}"


@dataclass(frozen=True)
class PluginSpec:
    """A built-in plugin: its pedalboard class, parameters and how it behaves when audio is chunked.

    ``streamable`` is False where processing a file in chunks gives a different result from one call
    (PitchShift, GSMFullRateCompressor: pedalboard #415/#267).  ``fixed_blocks`` is True where chunked output
    matches one-shot output only if every block has the same size (MP3Compressor, Resample).
    """

    name: str
    cls: type
    params: dict[str, ParamSpec]
    doc: str
    streamable: bool = True
    fixed_blocks: bool = False


# --- table helpers --------------------------------------------------------------------------------


def _float(
    name: str,
    default: float,
    unit: str | None,
    minimum: float | None,
    maximum: float | None,
    doc: str,
    *,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
    below_nyquist: bool = False,
) -> ParamSpec:
    return ParamSpec(
        name,
        "float",
        default,
        unit,
        minimum,
        maximum,
        below_nyquist=below_nyquist,
        doc=doc,
        min_exclusive=min_exclusive,
        max_exclusive=max_exclusive,
    )


def _enum(name: str, enum_type: Any, default: str, doc: str) -> ParamSpec:
    return ParamSpec(
        name,
        "enum",
        default,
        None,
        None,
        None,
        choices=tuple(enum_type.__members__),
        doc=doc,
        enum_type=enum_type,
    )


def _plugin(
    cls: type, doc: str, *params: ParamSpec, streamable: bool = True, fixed_blocks: bool = False
) -> PluginSpec:
    return PluginSpec(
        cls.__name__, cls, {p.name: p for p in params}, doc, streamable=streamable, fixed_blocks=fixed_blocks
    )


_MAX_AUDIO_HZ = 96000.0  # Nyquist at 192 kHz: static ceiling for frequencies when no sample rate is known
_MAX_RATE_HZ = 384000.0
_Q_DOC = "Filter Q (bandwidth/steepness), > 0 (pedalboard); at most 100 (pedalchain limit)."
_THRESHOLD = (-120.0, 24.0)  # dBFS range for thresholds/ceilings: pedalchain limit, pedalboard has none
_Quality = pedalboard.Resample.Quality


def _cutoff(name: str, default: float, what: str) -> ParamSpec:
    return _float(
        name,
        default,
        "Hz",
        1.0,
        _MAX_AUDIO_HZ,
        f"{what}, in Hz; 1 Hz up to (not including) Nyquist (pedalchain limit: pedalboard accepts any value "
        "and outputs garbage or NaN above Nyquist).",
        below_nyquist=True,
    )


def _eq(cls: type, doc: str) -> PluginSpec:
    return _plugin(
        cls,
        doc,
        _cutoff("cutoff_frequency_hz", 440.0, "Corner/centre frequency"),
        _float(
            "gain_db", 0.0, "dB", -48.0, 48.0, "Boost (+) or cut (-) in dB; -48..+48 dB (pedalchain limit)."
        ),
        _float("q", 0.7071067690849304, None, 0.0, 100.0, _Q_DOC, min_exclusive=True),
    )


def _threshold(default: float, what: str) -> ParamSpec:
    return _float(
        "threshold_db", default, "dB", *_THRESHOLD, f"{what}, in dBFS; -120..+24 dB (pedalchain limit)."
    )


def _time_ms(name: str, default: float, maximum: float, what: str) -> ParamSpec:
    return _float(
        name,
        default,
        "ms",
        0.0,
        maximum,
        f"{what}, in ms; > 0 up to {maximum:g} ms (pedalchain limit: pedalboard accepts <= 0 silently).",
        min_exclusive=True,
    )


def _mix(default: float, enforced: bool = True) -> ParamSpec:
    source = "pedalboard" if enforced else "pedalchain limit: pedalboard accepts any value"
    return _float("mix", default, None, 0.0, 1.0, f"Dry/wet balance, 0 = dry .. 1 = wet ({source}).")


BUILTIN_PLUGINS: dict[str, PluginSpec] = {
    spec.name: spec
    for spec in (
        _plugin(
            pedalboard.Bitcrush,
            "Reduce the bit depth (vertical resolution) for a lo-fi sound.",
            _float(
                "bit_depth", 8.0, None, 0.0, 32.0, "Bit depth to quantize to, in bits; 0..32 (pedalboard)."
            ),
        ),
        _plugin(
            pedalboard.BrickwallLimiter,
            "Lookahead brick-wall limiter with a ceiling and no makeup gain.",
            _float(
                "ceiling_db",
                -1.0,
                "dB",
                *_THRESHOLD,
                "Output peak ceiling, in dBFS; -120..+24 dB (pedalchain limit).",
            ),
            _float(
                "release_ms",
                100.0,
                "ms",
                0.0,
                10000.0,
                "Release time, in ms; > 0 (pedalboard), at most 10000 ms (pedalchain limit).",
                min_exclusive=True,
            ),
            _float(
                "lookahead_ms",
                5.0,
                "ms",
                0.0,
                100.0,
                "Lookahead delay, in ms; (0, 100] ms (pedalboard).",
                min_exclusive=True,
            ),
            ParamSpec(
                "true_peak",
                "bool",
                False,
                None,
                None,
                None,
                doc="Detect inter-sample peaks (4x oversampling).",
            ),
        ),
        _plugin(
            pedalboard.Chorus,
            "Chorus (also flanger/vibrato) modulating a short delay with an LFO.",
            _float("rate_hz", 1.0, "Hz", 0.0, 100.0, "LFO speed, in Hz; 0..100 Hz (pedalboard)."),
            _float(
                "depth", 0.25, None, 0.0, 1.0, "LFO depth, 0..1 (JUCE range; pedalboard accepts any value)."
            ),
            _float(
                "centre_delay_ms",
                7.0,
                "ms",
                1.0,
                100.0,
                "Centre delay, in ms; 1..100 ms (JUCE range; pedalboard silently clamps other values).",
            ),
            _float(
                "feedback",
                0.0,
                None,
                -1.0,
                1.0,
                "Feedback amount, -1..1 (JUCE range; pedalboard accepts any value and blows up beyond it).",
            ),
            _mix(0.5),
        ),
        _plugin(
            pedalboard.Clipping,
            "Hard clipping at a threshold.",
            _threshold(-6.0, "Clipping level"),
        ),
        _plugin(
            pedalboard.Compressor,
            "Dynamic range compressor, each channel on its own (in a chain, stereo_link: true gives every channel "
            "the gain of the loudest).",
            _threshold(0.0, "Level above which compression starts"),
            _float(
                "ratio",
                1.0,
                None,
                1.0,
                100.0,
                "Compression ratio (x:1); >= 1 (pedalboard), at most 100 (pedalchain limit).",
            ),
            _time_ms("attack_ms", 1.0, 1000.0, "Attack time"),
            _time_ms("release_ms", 100.0, 10000.0, "Release time"),
        ),
        _plugin(
            pedalboard.Convolution,
            "Convolution with an impulse response file (cabinet simulation, reverb).",
            ParamSpec(
                "impulse_response_filename",
                "path",
                None,
                None,
                None,
                None,
                doc="Impulse response audio file; relative to the chain file's folder.",
                required=True,
            ),
            _mix(1.0, enforced=False),
            ParamSpec(
                "sample_rate",
                "float",
                None,
                "Hz",
                0.0,
                _MAX_RATE_HZ,
                doc="Sample rate of the impulse response, in Hz; pedalboard ignores it for files (only used "
                "for NumPy impulse responses); > 0 up to 384 kHz (pedalchain limit). Optional.",
                min_exclusive=True,
            ),
        ),
        _plugin(
            pedalboard.Delay,
            "Digital delay with feedback and dry/wet mix.",
            _float("delay_seconds", 0.5, "s", 0.0, 30.0, "Delay time, in seconds; 0..30 s (pedalboard)."),
            _float("feedback", 0.0, None, 0.0, 1.0, "Feedback amount, 0..1 (pedalboard)."),
            _mix(0.5),
        ),
        _plugin(
            pedalboard.Distortion,
            "tanh waveshaping distortion: tanh(x * gain(drive_db)).",
            _float(
                "drive_db",
                25.0,
                "dB",
                0.0,
                100.0,
                "Input drive before the tanh, in dB; 0..100 dB (pedalchain limit; pedalboard has none).",
            ),
        ),
        _plugin(
            pedalboard.GSMFullRateCompressor,
            "GSM Full Rate codec (2G phone) degradation; resamples to 8 kHz internally.",
            _enum("quality", _Quality, "WindowedSinc8", "Resampling algorithm used around the 8 kHz codec."),
            streamable=False,
        ),
        _plugin(
            pedalboard.Gain,
            "Volume change in dB.",
            _float("gain_db", 1.0, "dB", -120.0, 60.0, "Gain, in dB; -120..+60 dB (pedalchain limit)."),
        ),
        _eq(pedalboard.HighShelfFilter, "High shelf: boost or cut above the cutoff frequency."),
        _plugin(
            pedalboard.HighpassFilter,
            "First-order (6 dB/octave) high-pass filter.",
            _cutoff("cutoff_frequency_hz", 50.0, "-3 dB cutoff frequency"),
        ),
        _plugin(pedalboard.Invert, "Flip the polarity of the signal (no parameters)."),
        _plugin(
            pedalboard.LadderFilter,
            "Moog-style multi-mode ladder filter.",
            _enum(
                "mode",
                pedalboard.LadderFilter.Mode,
                "LPF12",
                "Filter type: low/high/band-pass, 12 or 24 dB/oct.",
            ),
            _cutoff("cutoff_hz", 200.0, "Cutoff frequency"),
            _float("resonance", 0.0, None, 0.0, 1.0, "Resonance, 0..1 (pedalboard)."),
            _float(
                "drive",
                1.0,
                None,
                1.0,
                100.0,
                "Input drive (linear gain); >= 1 (pedalboard), at most 100 (pedalchain limit).",
            ),
        ),
        _plugin(
            pedalboard.Limiter,
            "Loudness-maximising limiter (JUCE): compression, makeup gain, hard clip at 0 dBFS.",
            _threshold(-10.0, "Level at which limiting engages"),
            _time_ms("release_ms", 100.0, 10000.0, "Release time"),
        ),
        _eq(pedalboard.LowShelfFilter, "Low shelf: boost or cut below the cutoff frequency."),
        _plugin(
            pedalboard.LowpassFilter,
            "First-order (6 dB/octave) low-pass filter.",
            _cutoff("cutoff_frequency_hz", 50.0, "-3 dB cutoff frequency"),
        ),
        _plugin(
            pedalboard.MP3Compressor,
            "LAME MP3 encode/decode artifacts (VBR); only at 8/11.025/12/16/22.05/24/32/44.1/48 kHz.",
            _float(
                "vbr_quality",
                2.0,
                None,
                0.0,
                10.0,
                "LAME VBR quality, 0 (best) .. <10 (worst); pedalboard accepts 10 but fails when processing.",
                max_exclusive=True,
            ),
            fixed_blocks=True,
        ),
        _plugin(
            pedalboard.NoiseGate,
            "Noise gate / downward expander.",
            _threshold(-100.0, "Level below which the gate closes"),
            _float(
                "ratio",
                10.0,
                None,
                1.0,
                100.0,
                "Expansion ratio, 1..100 (JUCE: >= 1; 100 is a pedalchain limit; pedalboard accepts any).",
            ),
            _time_ms("attack_ms", 1.0, 1000.0, "Attack time"),
            _time_ms("release_ms", 100.0, 10000.0, "Release time"),
        ),
        _eq(pedalboard.PeakFilter, "Peak (bell) or notch EQ band around the cutoff frequency."),
        _plugin(
            pedalboard.Phaser,
            "6-stage phaser sweeping all-pass filters with an LFO.",
            _float(
                "rate_hz",
                1.0,
                "Hz",
                0.0,
                100.0,
                "LFO speed, in Hz; 0..100 Hz (JUCE range; pedalboard accepts any).",
            ),
            _float(
                "depth", 0.5, None, 0.0, 1.0, "LFO depth, 0..1 (JUCE range; pedalboard accepts any value)."
            ),
            _cutoff("centre_frequency_hz", 1300.0, "Centre frequency of the sweep"),
            _float(
                "feedback",
                0.0,
                None,
                -1.0,
                1.0,
                "Feedback, -1..1 (JUCE range; pedalboard accepts any value and outputs NaN beyond it).",
            ),
            _mix(0.5, enforced=False),
        ),
        _plugin(
            pedalboard.PitchShift,
            "Pitch shift without changing duration (Rubber Band).",
            _float("semitones", 0.0, "semitones", -72.0, 72.0, "Shift, in semitones; -72..+72 (pedalboard)."),
            streamable=False,
        ),
        _plugin(
            pedalboard.Resample,
            "Downsample to a target rate and back, for aliasing/lo-fi effects.",
            _float(
                "target_sample_rate",
                8000.0,
                "Hz",
                0.0,
                _MAX_RATE_HZ,
                "Intermediate sample rate, in Hz; > 0 (pedalboard), at most 384 kHz (pedalchain limit).",
                min_exclusive=True,
            ),
            _enum("quality", _Quality, "WindowedSinc32", "Resampling algorithm."),
            fixed_blocks=True,
        ),
        _plugin(
            pedalboard.Reverb,
            "Freeverb-style stereo reverb.",
            _float("room_size", 0.5, None, 0.0, 1.0, "Room size, 0..1 (pedalboard)."),
            _float("damping", 0.5, None, 0.0, 1.0, "High-frequency damping, 0..1 (pedalboard)."),
            _float("wet_level", 0.33, None, 0.0, 1.0, "Wet (reverb) level, linear 0..1 (pedalboard)."),
            _float("dry_level", 0.4, None, 0.0, 1.0, "Dry (direct) level, linear 0..1 (pedalboard)."),
            _float("width", 1.0, None, 0.0, 1.0, "Stereo width, 0..1 (pedalboard)."),
            _float(
                "freeze_mode",
                0.0,
                None,
                0.0,
                1.0,
                "Freeze (infinite sustain) when >= 0.5; 0..1 (pedalboard).",
            ),
        ),
    )
}


# --- lookup --------------------------------------------------------------------------------


def _did_you_mean(name: str, options: list[str]) -> str:
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" Did you mean '{lowered[close[0]]}'?" if close else ""


def spec_for(plugin_name: str) -> PluginSpec:
    """The :class:`PluginSpec` of a built-in plugin by its pedalboard class name (e.g. ``"LowpassFilter"``).

    Raises :class:`ChainFileError` for unknown names, suggesting the closest built-in.
    """
    spec = BUILTIN_PLUGINS.get(plugin_name) if isinstance(plugin_name, str) else None
    if spec is None:
        names = sorted(BUILTIN_PLUGINS)
        hint = _did_you_mean(plugin_name, names) if isinstance(plugin_name, str) else ""
        raise ChainFileError(
            f"Unknown built-in plugin {plugin_name!r}.{hint} Built-in plugins: {', '.join(names)}",
            where=str(plugin_name),
        )
    return spec


def _spec_for_instance(plugin: pedalboard.Plugin) -> PluginSpec:
    for spec in BUILTIN_PLUGINS.values():
        if type(plugin) is spec.cls:
            return spec
    for spec in BUILTIN_PLUGINS.values():
        if isinstance(plugin, spec.cls):
            return spec
    raise ParameterError(
        f"{type(plugin).__name__} is not a pedalboard built-in plugin known to pedalchain",
        where=type(plugin).__name__,
    )


# --- validation --------------------------------------------------------------------------------


def _check_sample_rate_value(sample_rate: Any) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise ParameterError(f"Sample rate must be a number in Hz, got {sample_rate!r}", where="sample_rate")
    rate = float(sample_rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ParameterError(
            f"Sample rate must be a positive number in Hz, got {sample_rate!r}", where="sample_rate"
        )
    return rate


def _check_range(plugin: str, p: ParamSpec, value: float, sample_rate: float | None) -> None:
    high, high_excl = p.maximum, p.max_exclusive
    if p.below_nyquist and sample_rate is not None and (high is None or sample_rate / 2 <= high):
        high, high_excl = sample_rate / 2, True
    too_low = p.minimum is not None and (value <= p.minimum if p.min_exclusive else value < p.minimum)
    too_high = high is not None and (value >= high if high_excl else value > high)
    if too_low or too_high:
        raise ParameterError(
            f"Value received for parameter '{p.name}' ({format_quantity(value, p.unit, exact=True)}) "
            f"is out of range {p.range_text(sample_rate)}",
            where=f"{plugin}.{p.name}",
        )


def _coerce_enum(plugin: str, p: ParamSpec, raw: Any) -> Any:
    where = f"{plugin}.{p.name}"
    if p.enum_type is not None and isinstance(raw, p.enum_type):
        return raw
    options = ", ".join(p.choices)
    if not isinstance(raw, str):
        raise ParameterError(
            f"Value received for parameter '{p.name}' ({raw!r}) must be one of the names {options}",
            where=where,
        )
    members = p.enum_type.__members__
    if raw in members:
        return members[raw]
    by_lower = {n.lower(): n for n in p.choices}
    if raw.lower() in by_lower:
        return members[by_lower[raw.lower()]]
    hint = _did_you_mean(raw, list(p.choices))
    raise ParameterError(
        f"Value received for parameter '{p.name}' ({raw!r}) is not a valid option.{hint} Options: {options}",
        where=where,
    )


def _coerce_path(plugin: str, p: ParamSpec, raw: Any, base_dir: Path | None) -> str:
    where = f"{plugin}.{p.name}"
    if isinstance(raw, bool) or not isinstance(raw, (str, os.PathLike)) or str(raw).strip() == "":
        raise ParameterError(
            f"Value received for parameter '{p.name}' ({raw!r}) must be a file path (string)", where=where
        )
    path = Path(raw).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    path = Path(os.path.abspath(path))
    if not path.is_file():
        relative = (
            f" (resolved against {base_dir})" if base_dir is not None and not Path(raw).is_absolute() else ""
        )
        raise ParameterError(f"File for parameter '{p.name}' not found: {path}{relative}", where=where)
    return str(path)


def _coerce(plugin: str, p: ParamSpec, raw: Any, sample_rate: float | None, base_dir: Path | None) -> Any:
    where = f"{plugin}.{p.name}"
    if p.kind == "enum":
        return _coerce_enum(plugin, p, raw)
    if p.kind == "path":
        return _coerce_path(plugin, p, raw, base_dir)
    if p.kind == "bool":
        if isinstance(raw, (bool, np.bool_)):
            return bool(raw)
        raise ParameterError(
            f"Value received for parameter '{p.name}' ({raw!r}) must be true or false", where=where
        )
    if raw is None and not p.required and p.default is None:
        return None  # optional parameter explicitly left unset (Convolution.sample_rate)
    value = parse_quantity(raw, p.unit, p.name, where=where)
    if p.kind == "int":
        if not value.is_integer():
            raise ParameterError(
                f"Value received for parameter '{p.name}' ({raw!r}) must be a whole number", where=where
            )
        _check_range(plugin, p, value, sample_rate)
        return int(value)
    _check_range(plugin, p, value, sample_rate)
    return value


def _check_plugin_sample_rate(spec: PluginSpec, sample_rate: float) -> None:
    if spec.cls is pedalboard.MP3Compressor and int(sample_rate) not in MP3_SAMPLE_RATES:
        rates = ", ".join(f"{r:g}" for r in sorted(MP3_SAMPLE_RATES))
        raise ParameterError(
            f"MP3Compressor cannot process audio at {sample_rate:g} Hz; supported sample rates: {rates} Hz",
            where=spec.name,
        )


def validate_params(
    plugin: str,
    values: Mapping[str, Any] | None,
    sample_rate: float | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Check and convert parameter values for built-in ``plugin``; return pedalboard-ready keyword arguments.

    Values may carry unit suffixes (``"1.5 kHz"``, ``"250 ms"``; see :mod:`.units`) and are converted to the
    parameter's unit; enum values are member names (``"HPF24"``) converted to pedalboard enum members; paths
    are resolved against ``base_dir`` (the chain file's folder; the working directory if None) and must
    exist.  ``sample_rate`` (Hz), when known, caps frequencies below Nyquist and checks rate-dependent
    plugins (MP3Compressor).  Only the given parameters are returned (pedalboard supplies the defaults).

    Raises :class:`ChainFileError` for an unknown plugin and :class:`ParameterError` (``where`` =
    ``"Plugin.param"``) for unknown names, wrong types, values out of range, bad enum names, missing files
    and missing required parameters.
    """
    spec = spec_for(plugin)
    rate = _check_sample_rate_value(sample_rate) if sample_rate is not None else None
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ParameterError(
            f"Parameters of {plugin} must be a mapping of name to value, got {type(values).__name__}",
            where=plugin,
        )
    result: dict[str, Any] = {}
    for key, raw in values.items():
        p = spec.params.get(key) if isinstance(key, str) else None
        if p is None:
            if not spec.params:
                raise ParameterError(f"{plugin} takes no parameters (got {key!r})", where=f"{plugin}.{key}")
            names = list(spec.params)
            hint = _did_you_mean(str(key), names)
            raise ParameterError(
                f"Unknown parameter {key!r} for {plugin}.{hint} Valid parameters: {', '.join(names)}",
                where=f"{plugin}.{key}",
            )
        value = _coerce(plugin, p, raw, rate, base_dir)
        if value is not None:
            result[key] = value
    for p in spec.params.values():
        if p.required and p.name not in result:
            raise ParameterError(
                f"{plugin} requires parameter '{p.name}' ({p.doc})", where=f"{plugin}.{p.name}"
            )
    if rate is not None:
        _check_plugin_sample_rate(spec, rate)
    return result


def build_builtin(
    plugin: str,
    values: Mapping[str, Any] | None,
    sample_rate: float | None = None,
    base_dir: Path | None = None,
) -> pedalboard.Plugin:
    """Validate ``values`` (see :func:`validate_params`) and construct the pedalboard plugin.

    With a ``sample_rate`` (Hz) the built plugin, defaults included, is also checked against it
    (:func:`check_sample_rate`).  Errors pedalboard raises anyway become :class:`ParameterError`.
    """
    kwargs = validate_params(plugin, values, sample_rate, base_dir)
    spec = BUILTIN_PLUGINS[plugin]
    try:
        instance = spec.cls(**kwargs)
    except (ValueError, RuntimeError, TypeError) as error:
        raise ParameterError(f"pedalboard rejected the parameters: {error}", where=plugin) from error
    if sample_rate is not None:
        check_sample_rate(instance, sample_rate)
    return instance


_DB_DECIMALS = 4  # read-back resolution of dB values: 0.0001 dB


def _clean_float(value: float) -> float:
    """pedalboard stores most parameters as float32; report 0.33 rather than 0.33000001311302185."""
    value = float(value)
    single = np.float32(value)
    if math.isfinite(value) and float(single) == value:
        return float(str(single))
    return value


def builtin_param_values(plugin: pedalboard.Plugin) -> dict[str, Any]:
    """Current parameter values of a live built-in plugin, YAML-ready, for the parameters in the table.

    Enums are returned as member names, paths as ``str``, floats as the shortest decimal of pedalboard's
    float32 value (``0.33``, not ``0.33000001311302185``) and dB values rounded to 0.0001 dB (the EQ
    filters keep gain as a linear factor, so ``gain_db=-12.48`` reads back as -12.4800005).  Parameters
    pedalboard cannot report (``Convolution.sample_rate``; the filename of a Convolution built from an array)
    are left out.
    Raises :class:`ParameterError` if ``plugin`` is not a built-in.
    """
    spec = _spec_for_instance(plugin)
    result: dict[str, Any] = {}
    for p in spec.params.values():
        try:
            value = getattr(plugin, p.name)
        except AttributeError:
            continue
        if value is None:
            continue
        if p.kind == "enum":
            result[p.name] = value.name
        elif p.kind == "path":
            result[p.name] = str(value)
        elif p.kind == "bool":
            result[p.name] = bool(value)
        elif p.kind == "int":
            result[p.name] = int(value)
        elif p.unit == "dB":
            # The EQ filters store gain as a linear factor: -12.48 dB reads back as -12.4800005.
            result[p.name] = _clean_float(round(float(value), _DB_DECIMALS))
        else:
            result[p.name] = _clean_float(value)
    return result


def check_sample_rate(plugin: pedalboard.Plugin, sample_rate: float) -> None:
    """Re-check a live plugin's sample-rate-dependent limits at ``sample_rate`` (Hz).

    Frequencies marked ``below_nyquist`` must be below ``sample_rate / 2``; MP3Compressor needs one of
    :data:`MP3_SAMPLE_RATES`.  Containers (Pedalboard, Chain, Mix) are checked recursively; plugins that are
    not built-ins (VST3, ...) are skipped.  Raises :class:`ParameterError`.
    """
    rate = _check_sample_rate_value(sample_rate)
    if isinstance(plugin, pedalboard.PluginContainer):
        for child in plugin:
            check_sample_rate(child, rate)
        return
    try:
        spec = _spec_for_instance(plugin)
    except ParameterError:
        return
    for p in spec.params.values():
        if p.below_nyquist:
            _check_range(spec.name, p, float(getattr(plugin, p.name)), rate)
    _check_plugin_sample_rate(spec, rate)


def _default_text(p: ParamSpec) -> str:
    if p.required:
        return "required"
    if p.default is None:
        return "optional"
    if p.kind == "float":
        return format_quantity(p.default, p.unit)
    return str(p.default).lower() if p.kind == "bool" else str(p.default)


def describe_builtins() -> str:
    """Human-readable listing of every built-in plugin and its parameters (unit, range, default), for
    ``chain plugins``."""
    lines: list[str] = []
    for spec in BUILTIN_PLUGINS.values():
        notes = []
        if not spec.streamable:
            notes.append("not streamable")
        if spec.fixed_blocks:
            notes.append("fixed block size when streaming")
        suffix = f"  [{'; '.join(notes)}]" if notes else ""
        lines.append(f"{spec.name}: {spec.doc}{suffix}")
        if not spec.params:
            lines.append("    (no parameters)")
        for p in spec.params.values():
            kind = p.kind if p.unit is None else f"{p.kind}, {p.unit}"
            lines.append(f"    {p.name} ({kind}): {p.range_text()}; default {_default_text(p)}")
            lines.append(f"        {p.doc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
