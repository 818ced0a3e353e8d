"""Third-party VST3 plugins: probing in a child process (hang-proof), loading, validation, dual-mono.

pedalboard loads a VST3 on the calling thread and some plugins never return (Debian's ZamVerb); a
plugin loaded off the main thread refuses to run.  So we first load the plugin in a child process
with a timeout, learn its parameters, latency and channel support there, and only then load it here.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard

from ..errors import ParameterError, PluginLoadError
from .chatter import PLUGIN_TEARDOWN_CHATTER, chatter_dropped
from .native import NativeSegment
from .processor import Processor
from .units import parse_quantity

DEFAULT_PLUGIN_TIMEOUT_S = 30.0
VST3_SEARCH_DIRS = ("/usr/lib/vst3", "/usr/local/lib/vst3", "~/.vst3")
SKIPPED_ON_SAVE = frozenset({"current_program"})
"""Saved through ``state`` instead: setting a program after the state would overwrite parameters."""

_PROBE = r"""
import json, sys
import numpy as np
import pedalboard
plugin = pedalboard.load_plugin(sys.argv[1])
def runs(channels):
    try:
        plugin.process(np.zeros((channels, 256), np.float32), 44100.0)
        return True
    except Exception:
        return False
params = {}
for name, p in plugin.parameters.items():
    params[name] = {
        "label": p.name, "units": (p.units or "").strip(), "minimum": p.min_value, "maximum": p.max_value,
        "text": p.type is str, "choices": list(p.valid_values) if p.type is str else [],
        "writable": bool(p.is_automatable), "value": getattr(plugin, name),
    }
def resets_exactly(channels):
    # the plugin's own reset must erase what it processed before: the same input after a reset gives the same
    # output, sample for sample, whether a chirp or a loud square wave came before
    plugin._reload_type = pedalboard.ExternalPluginReloadType.ClearsAudioOnReset
    t = np.arange(22050) / 44100.0
    chirp = np.tile(0.3 * np.sin(2 * np.pi * 110 * t * (1 + t)) * np.exp(-3 * t), (channels, 1)).astype(np.float32)
    square = np.tile(0.9 * np.sign(np.sin(2 * np.pi * 55 * t)), (channels, 1)).astype(np.float32)
    try:
        first = plugin.process(chirp, 44100.0)
        plugin.process(square, 44100.0)
        return bool(np.array_equal(plugin.process(chirp, 44100.0), first))
    except Exception:
        return False  # then it is loaded afresh at every reset, which is always exact
mono, stereo = runs(1), runs(2)
print(json.dumps({"name": plugin.name, "parameters": params, "latency": plugin.reported_latency_samples,
                  "mono": mono, "stereo": stereo, "resets_exactly": resets_exactly(2 if stereo else 1)}))
"""


@dataclass(frozen=True)
class VST3Param:
    """One VST3 parameter as pedalboard exposes it (``name`` is pedalboard's python name)."""

    name: str
    label: str
    units: str
    minimum: float | None
    maximum: float | None
    text: bool
    choices: tuple[str, ...]
    writable: bool
    value: Any


@dataclass(frozen=True)
class VST3Info:
    """What a child process learned about a plugin: name, parameters, latency (samples), channel support."""

    path: Path
    name: str
    parameters: dict[str, VST3Param]
    latency: int
    mono: bool
    stereo: bool
    resets_exactly: bool
    """Whether the plugin's own reset gives the output of a fresh instance.  pedalboard guesses this per instance
    from random noise, and for ZamTube guessed wrong about one load in six: a reset then kept state (output 6e-3
    off).  Plugins that do not reset exactly are loaded afresh at every reset instead (:func:`_load_in_process`)."""

    def describe(self) -> str:
        channels = "stereo" if self.stereo else "mono only (stereo runs one instance per channel)"
        lines = [f"{self.name}  ({self.path})", f"  channels: {channels}; reported latency: {self.latency} samples"]
        for param in self.parameters.values():
            if param.text:
                shown = f"one of {', '.join(param.choices)}"
            else:
                unit = f" {param.units}" if param.units else ""
                shown = f"{param.minimum:g} .. {param.maximum:g}{unit}"
            note = "" if param.writable else "  (read-only meter/host value, not settable)"
            lines.append(f"  {param.name:<24} {shown}; now {param.value!r}{note}")
        return "\n".join(lines)


_LOADED_FROM: weakref.WeakKeyDictionary[pedalboard.VST3Plugin, Path] = weakref.WeakKeyDictionary()
"""pedalboard 0.9 does not expose the file a VST3Plugin came from; we remember it for plugins we load."""


def vst3_path(plugin: pedalboard.VST3Plugin) -> Path:
    """The .vst3 bundle ``plugin`` was loaded from.

    Known for plugins loaded through pedalchain; for others, found by name in the usual VST3 folders.
    """
    known = _LOADED_FROM.get(plugin)
    if known is not None:
        return known
    for bundle in installed_vst3_plugins():
        if plugin.name in _plugin_names(bundle):
            _LOADED_FROM[plugin] = bundle
            return bundle
    raise PluginLoadError(
        "cannot tell which file this VST3 plugin was loaded from (pedalboard does not say); load it with "
        "pedalchain.effects.load_vst3, or install it in a standard VST3 folder",
        where=plugin.name,
    )


@lru_cache(maxsize=256)
def _plugin_names(bundle: Path) -> tuple[str, ...]:
    try:
        return tuple(pedalboard.VST3Plugin.get_plugin_names_for_file(str(bundle)))
    except Exception:  # an unloadable bundle simply is not the one we are looking for
        return ()


def installed_vst3_plugins() -> list[Path]:
    """VST3 bundles found in the usual Linux folders, sorted."""
    found: list[Path] = []
    for folder in VST3_SEARCH_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            found.extend(sorted(root.glob("*.vst3")))
    return found


def probe_vst3(path: str | Path, timeout_s: float = DEFAULT_PLUGIN_TIMEOUT_S) -> VST3Info:
    """Load ``path`` in a child process, give up after ``timeout_s`` seconds; raises PluginLoadError."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise PluginLoadError("no such VST3 plugin (check the path)", where=path)
    if resolved.suffix.lower() != ".vst3":
        raise PluginLoadError("not a VST3 plugin: expected a .vst3 bundle", where=path)
    return _probe_cached(resolved, resolved.stat().st_mtime_ns, float(timeout_s))


@lru_cache(maxsize=64)
def _probe_cached(path: Path, mtime_ns: int, timeout_s: float) -> VST3Info:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except subprocess.TimeoutExpired:
        raise PluginLoadError(
            f"plugin did not finish loading within {timeout_s:g} s and was given up; it hangs in this host "
            "(raise --plugin-timeout if it is just slow)", where=path,
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"loader exited with status {done.returncode}"
        raise PluginLoadError(f"could not load as a VST3 plugin: {reason}", where=path)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    parameters = {
        name: VST3Param(name=name, choices=tuple(p.pop("choices")), **p) for name, p in report["parameters"].items()
    }
    if not (report["mono"] or report["stereo"]):
        raise PluginLoadError("plugin processes neither mono nor stereo audio", where=path)
    return VST3Info(path, report["name"], parameters, int(report["latency"]), report["mono"], report["stereo"],
                    report["resets_exactly"])


def validate_vst3_params(info: VST3Info, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges against the probed parameters; return values ready to set."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        where = f"{info.name}.{name}"
        param = info.parameters.get(name)
        if param is None:
            close = difflib.get_close_matches(name, list(info.parameters), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            settable = ", ".join(p.name for p in info.parameters.values() if p.writable)
            raise ParameterError(f"unknown parameter{hint}; {info.name} has: {settable}", where=where)
        if not param.writable:
            raise ParameterError("is a read-only meter/host value and cannot be set", where=where)
        if param.text:
            if str(value) not in param.choices:
                raise ParameterError(f"'{value}' is not one of: {', '.join(param.choices)}", where=where)
            checked[name] = str(value)
            continue
        unit = param.units if param.units in ("dB", "ms", "Hz", "s") else None
        number = parse_quantity(value, unit, name, where=where)
        if param.minimum is not None and not param.minimum <= number <= param.maximum:
            unit_text = f" {param.units}" if param.units else ""
            raise ParameterError(
                f"value {number:g}{unit_text} is out of range [{param.minimum:g}, {param.maximum:g}]{unit_text}",
                where=where,
            )
        checked[name] = number
    return checked


def load_vst3(
    path: str | Path,
    parameter_values: Mapping[str, Any] | None = None,
    state: bytes | None = None,
    timeout_s: float = DEFAULT_PLUGIN_TIMEOUT_S,
) -> pedalboard.VST3Plugin | MonoPerChannel:
    """Load a VST3 plugin safely: probe (with timeout), validate parameters, restore ``state``, then
    apply ``parameter_values`` that differ from what the state gives.  A mono-only plugin comes back wrapped in
    :class:`MonoPerChannel`.

    A saved chain holds both the state and every parameter's value read back from it; setting a value the state
    already gives is not a no-op (pedalboard's setter goes through the plugin's normalised 0..1 range and back:
    ZamCompX2's ratio 4 came back as 4.002), so only a value edited in the YAML is set."""
    info = probe_vst3(path, timeout_s)
    values = validate_vst3_params(info, parameter_values or {})
    plugin = _load_in_process(info.path, state, info.resets_exactly)
    for name, value in values.items():
        if state is None or not _same_value(getattr(plugin, name), value):
            setattr(plugin, name, value)
    return plugin if info.stereo else MonoPerChannel(plugin)


def _same_value(current: Any, wanted: Any) -> bool:
    """Whether a parameter's ``current`` value (a float or a text value, as pedalboard reports it) is ``wanted``."""
    if isinstance(wanted, str):
        return str(current) == wanted
    return float(current) == float(wanted)


def _load_in_process(path: Path, state: bytes | None, resets_exactly: bool) -> pedalboard.VST3Plugin:
    try:
        with chatter_dropped(PLUGIN_TEARDOWN_CHATTER):  # loading deletes a trial instance
            plugin = pedalboard.load_plugin(str(path))
    except Exception as error:  # pedalboard raises ImportError/RuntimeError/ValueError by plugin
        raise PluginLoadError(f"could not load as a VST3 plugin: {error}", where=path) from None
    set_reset_kind(plugin, resets_exactly)
    _LOADED_FROM[plugin] = path
    if state is not None:
        try:
            plugin.raw_state = state
        except Exception as error:
            raise PluginLoadError(f"saved state does not fit this plugin: {error}", where=path) from None
    return plugin


def set_reset_kind(plugin: pedalboard.VST3Plugin, resets_exactly: bool) -> None:
    """Reset ``plugin`` by its own reset where that is exact (:attr:`VST3Info.resets_exactly`), else by loading it
    afresh; pedalboard's own guess is drawn from random noise."""
    kinds = pedalboard.ExternalPluginReloadType
    plugin._reload_type = kinds.ClearsAudioOnReset if resets_exactly else kinds.PersistsAudioOnReset


def prepare_vst3(plugin: pedalboard.VST3Plugin, num_channels: int) -> None:
    """Before a chain runs a VST3 it did not load itself (``Chain([plugin])``, ``Chain.from_pedalboard``): refuse
    channel counts the plugin cannot take (mono-only plugins loaded by us come wrapped in MonoPerChannel), and reset
    it exactly (:func:`set_reset_kind`)."""
    info = probe_vst3(vst3_path(plugin))
    set_reset_kind(plugin, info.resets_exactly)
    supported = [count for count, ok in ((1, info.mono), (2, info.stereo)) if ok]
    if num_channels not in supported:
        raise ParameterError(
            f"{info.name} processes {' or '.join(map(str, supported))} channel(s), not {num_channels}; "
            "downmix or split the file first",
            where=info.name,
        )


def vst3_param_values(plugin: pedalboard.VST3Plugin) -> dict[str, Any]:
    """Current values of the settable parameters, for saving (meters, host values and programs skipped)."""
    info = probe_vst3(vst3_path(plugin))
    return {
        name: getattr(plugin, name)
        for name, param in info.parameters.items()
        if param.writable and name not in SKIPPED_ON_SAVE
    }


class MonoPerChannel(Processor):
    """A mono-only plugin run as one instance per channel (dual-mono), each with the same settings.

    Args:
        plugin: the first instance; change its parameters, and every channel follows at the next reset.
    """

    def __init__(self, plugin: pedalboard.VST3Plugin) -> None:
        super().__init__()
        self.plugin = plugin
        self._segments: list[NativeSegment] = []

    def __repr__(self) -> str:
        return f"MonoPerChannel({self.plugin!r})"

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        with chatter_dropped(PLUGIN_TEARDOWN_CHATTER):
            self._segments = []  # the instances of an earlier preparation are deleted
        instances = [self.plugin]
        path = vst3_path(self.plugin)
        exact = self.plugin._reload_type == pedalboard.ExternalPluginReloadType.ClearsAudioOnReset
        instances += [_load_in_process(path, self.plugin.raw_state, exact) for _ in range(num_channels - 1)]
        self._segments = [NativeSegment([instance]) for instance in instances]
        return max(segment.latency_at(sample_rate, 1) for segment in self._segments)

    def _reset_state(self) -> None:
        state = self.plugin.raw_state
        for segment in self._segments:
            instance = segment.board[0]
            if instance is not self.plugin:
                instance.raw_state = state
            segment.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        return np.concatenate(
            [seg.process(audio[i : i + 1], sample_rate, reset=False) for i, seg in enumerate(self._segments)]
        )

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        return np.concatenate(
            [seg.process(audio[i : i + 1], sample_rate, buffer_size) for i, seg in enumerate(self._segments)]
        )
